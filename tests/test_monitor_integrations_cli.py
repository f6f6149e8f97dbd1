"""`preflight monitor` with its outputs on another trainer's log, in process: --spec's metric_map,
--sample-gpus (the fake NVML probe), --plot, --prometheus-textfile, --on-alert-command."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from fakes import NO_DRIVER, FakeGpuProbe
from monitor_logs import EXPECTED_ALERTS, verl_record, write_verl

from preflight import cli
from preflight.monitor import command
from preflight.monitor.sources.gpu import SAMPLES_FILE

pytest.importorskip("prometheus_client")


def test_outputs_of_a_once_report(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    log = write_verl(tmp_path / "exp.jsonl")
    monkeypatch.setattr(command, "gpu_probe", lambda: FakeGpuProbe(util=[0.9, 0.95]))
    seen = tmp_path / "hook.jsonl"
    hook = f"{sys.executable} -c \"import sys; open(r'{seen}', 'a').write(sys.stdin.read() + chr(10))\""
    code = cli.main(["monitor", str(log), "--once", "--format", "json", "--sample-gpus",
                     "--plot", str(tmp_path / "run.html"), "--prometheus-textfile", str(tmp_path / "m.prom"),
                     "--on-alert-command", hook])
    out, err = capsys.readouterr()
    assert code == 0, err
    body = json.loads(out)
    assert {(a["rule"], a["step"]) for a in body["alerts"]} == EXPECTED_ALERTS
    assert (tmp_path / SAMPLES_FILE).read_text().count("\n") >= 1  # sampled next to the run
    assert "<svg" in (tmp_path / "run.html").read_text()
    assert "preflight_alert_active" in (tmp_path / "m.prom").read_text()
    fired = {json.loads(line)["rule"] for line in seen.read_text().splitlines()}
    assert fired == set(body["in_alert"])  # a --once report: the rules in alert now


def test_spec_metric_map_reaches_the_reader(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "exp.jsonl"
    records = [verl_record(s) for s in range(1, 31)]
    for r in records:
        r["data"]["custom/trunc"] = r["data"].pop("response_length/clip_ratio")
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    spec = tmp_path / "run.yaml"
    spec.write_text("run: {name: verl-run}\nmonitoring:\n  metric_map: {truncation_rate: custom/trunc}\n")
    assert cli.main(["monitor", str(log), "--once", "--format", "json", "--spec", str(spec)]) == 0
    body = json.loads(capsys.readouterr().out)
    assert [a["rule"] for a in body["alerts"]] == ["truncation_high"]


@pytest.mark.parametrize(("args", "needle"), [
    (["--sample-gpus"], "no NVIDIA driver"),
    (["--plot", "run.pdf"], ".html or .png"),
    (["--webhook", "ftp://x"], "http:// or https://"),
    (["--prometheus-port", "9108"], "only while following"),
    (["--devices", "0"], "1 or more"),
])
def test_bad_options_exit_2_with_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch, args: list[str], needle: str) -> None:
    log = write_verl(tmp_path / "exp.jsonl", steps=5)
    monkeypatch.setattr(command, "gpu_probe", lambda: FakeGpuProbe(error=NO_DRIVER))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["monitor", str(log), "--once", *args]) == 2
    assert needle in capsys.readouterr().err


def test_following_a_finished_log_stops_when_idle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = write_verl(tmp_path / "exp.jsonl", steps=30)
    code = cli.main(["monitor", str(log), "--format", "json", "--interval", "0.05",
                     "--exit-when-idle", "0.3"])
    out, err = capsys.readouterr()
    assert code == 0 and "nothing new for 0.3 s" in err
    assert json.loads(out.splitlines()[-1])["last_step"] == 30


def test_an_output_that_cannot_be_written_warns_once_and_the_watch_goes_on(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A full disk or a missing folder under --prometheus-textfile must not end the monitoring of
    a run: a warning while following, the report at the end, then exit 2 naming the file."""
    log = write_verl(tmp_path / "exp.jsonl", steps=30)
    textfile = tmp_path / "gone" / "m.prom"
    code = cli.main(["monitor", str(log), "--format", "json", "--interval", "0.05",
                     "--exit-when-idle", "0.3", "--prometheus-textfile", str(textfile)])
    out, err = capsys.readouterr()
    assert code == 2
    assert err.count("warning: --prometheus-textfile") == 1 and "still following" in err
    assert "nothing new for 0.3 s" in err  # followed to the end
    assert json.loads(out.splitlines()[-1])["last_step"] == 30  # the report is not lost
    assert err.rstrip().endswith(f"--prometheus-textfile {textfile}: cannot write (No such file or directory)")


def test_attaching_to_a_run_sends_only_the_alerts_raised_after_it(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The alerts already in the log when the monitor attaches are printed but not posted again;
    an alert the run raises afterwards reaches the hook."""
    import threading
    import time

    log = write_verl(tmp_path / "exp.jsonl", steps=30)  # holds truncation_high at step 21
    seen = tmp_path / "hook.jsonl"
    hook = f"{sys.executable} -c \"import sys; open(r'{seen}', 'a').write(sys.stdin.read() + chr(10))\""

    def more() -> None:  # the run goes on past the loss spike at step 60
        time.sleep(0.8)
        with open(log, "a", encoding="utf-8") as fh:
            fh.write("".join(json.dumps(verl_record(s)) + "\n" for s in range(31, 71)))

    writer = threading.Thread(target=more)
    writer.start()
    code = cli.main(["monitor", str(log), "--interval", "0.1", "--exit-when-idle", "2.5",
                     "--on-alert-command", hook])
    writer.join()
    out = capsys.readouterr().out
    assert code == 0 and "truncation_high" in out and "loss_spike" in out
    fired = [json.loads(line)["rule"] for line in seen.read_text().splitlines() if line.strip()]
    assert fired == ["loss_spike"], fired
