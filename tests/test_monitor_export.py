"""What the monitor sends out: Prometheus metrics (read back with prometheus-client's own parser),
alert hooks (a command, and a webhook posted to a local HTTP server), and the plots."""

from __future__ import annotations

import json
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from monitor_logs import EXPECTED_ALERTS, write_verl

from preflight.monitor.core import RunMonitor
from preflight.monitor.export import Exporter
from preflight.monitor.hooks import AlertHooks
from preflight.monitor.plot import panels, to_html, write_plot
from preflight.monitor.sources.detect import detect, open_source

pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402


@pytest.fixture
def verl_monitor(tmp_path: Path) -> RunMonitor:
    path = write_verl(tmp_path / "exp.jsonl")
    found = detect(path)
    source = open_source(found, devices=8)
    source.final = True
    monitor = RunMonitor(found.run_dir, source=source, source_label=found.describe())
    monitor.poll()
    return monitor


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def exported(monitor: RunMonitor, exporter: Exporter) -> None:
    exporter.update(monitor.snapshot(), [r.id for r in monitor.engine.rules], monitor.state.alerts_by_rule)


def test_prometheus_textfile_and_endpoint_parse_with_prometheus_client(verl_monitor: RunMonitor,
                                                                       tmp_path: Path) -> None:
    textfile = tmp_path / "preflight.prom"
    exporter = Exporter(textfile, port=0, address="127.0.0.1")
    try:
        exported(verl_monitor, exporter)
        with urllib.request.urlopen(f"http://127.0.0.1:{exporter.port}/metrics", timeout=10) as r:
            scraped = r.read().decode()
    finally:
        exporter.close()
    for text in (textfile.read_text(), scraped):
        got = samples(text)
        run_name = Path(verl_monitor.run_dir).name  # the run label: the directory's name
        assert got[("preflight_alert_active", (("rule", "truncation_high"), ("run", run_name)))] == 1
        assert got[("preflight_alert_active", (("rule", "utilization_low"), ("run", run_name)))] == 0
        assert got[("preflight_alerts_total", (("rule", "loss_spike"), ("run", run_name)))] == 1
        assert got[("preflight_run_last_step", (("run", run_name),))] == 120
        assert got[("preflight_metric", (("metric", "truncation_rate"), ("run", run_name)))] == 0.25
        state = (("checklist", "during_training"), ("item", "loss_stable"),
                 ("preflight_checklist_item", "fail"), ("run", run_name))
        assert got[("preflight_checklist_item", state)] == 1
        assert ("preflight_fit_asymptote", (("run", run_name),)) in got
    assert not list(tmp_path.glob("*.tmp*"))  # written through a temporary file, renamed


class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append({"type": self.headers["Content-Type"], "body": json.loads(body)})
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_webhook_posts_slack_compatible_json_to_a_local_server(verl_monitor: RunMonitor) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Hook.received = []
    try:
        hooks = AlertHooks(webhook=f"http://127.0.0.1:{server.server_port}/hook")
        for alert in verl_monitor.snapshot().alerts:
            assert hooks.fire(alert, "exp") == []
    finally:
        server.shutdown()
    assert len(_Hook.received) == len(EXPECTED_ALERTS)
    assert all(r["type"] == "application/json" and set(r["body"]) == {"text"} for r in _Hook.received)
    assert "truncation_high at step 21" in _Hook.received[0]["body"]["text"]


def test_webhook_and_command_failures_are_reported(verl_monitor: RunMonitor, tmp_path: Path) -> None:
    alert = verl_monitor.snapshot().alerts[0]
    hooks = AlertHooks(command="exit 3", webhook="http://127.0.0.1:9/nothing-listens", timeout=2)
    problems = hooks.fire(alert, "exp")
    assert any("exited 3" in p for p in problems) and any("could not be reached" in p for p in problems)
    out = tmp_path / "alert.json"
    ok = AlertHooks(command=f"{sys.executable} -c \"import sys; open(r'{out}', 'w').write(sys.stdin.read())\"")
    assert ok.fire(alert, "exp") == []
    assert json.loads(out.read_text())["rule"] == "truncation_high"


def test_plots_html_self_contained_and_png(verl_monitor: RunMonitor, tmp_path: Path) -> None:
    import dataclasses

    verl_monitor.settings = dataclasses.replace(verl_monitor.settings, budget_hours=40.0)
    verl_monitor._fit_key = None  # refit with the budget
    snap = verl_monitor.snapshot()
    first = panels(snap)[0]
    assert first.band is not None and first.lines and first.points  # fit, its band, the points
    assert first.marker is not None and first.marker[0] == 40.0  # the prediction at the budget
    page = to_html(snap)
    assert page.count("<svg") == 4 and "<script" not in page and "http" not in page.replace(
        "http://www.w3.org/2000/svg", "")
    import re
    import xml.etree.ElementTree as ET

    for svg in re.findall(r"<svg.*?</svg>", page, re.S):
        ET.fromstring(svg)  # well-formed: a browser draws it
    html_path = write_plot(snap, tmp_path / "run.html")
    assert html_path.read_text() == page
    pytest.importorskip("matplotlib")
    png = write_plot(snap, tmp_path / "run.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import shutil

    shutil.copy(png, "/tmp/i15-plot.png")  # for a person to look at


def test_plot_refuses_another_suffix(verl_monitor: RunMonitor, tmp_path: Path) -> None:
    from preflight.errors import PreflightError

    with pytest.raises(PreflightError, match=".html or .png"):
        write_plot(verl_monitor.snapshot(), tmp_path / "run.pdf")
