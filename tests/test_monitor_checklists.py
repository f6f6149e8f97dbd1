"""Each live checklist item reaches pass, warn, fail and pending from planted events."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from preflight.errors import PreflightError
from preflight.monitor.checklists import SIGNOFFS_FILE, sign_off
from preflight.monitor.core import RunMonitor
from preflight.rundir import attestation_path
from preflight.spec import Spec, load_spec


def step(n: int, **metrics: Any) -> dict[str, Any]:
    base = {"type": "step", "time": float(n), "step": n, "loss": 0.5, "pass_rate": 0.5,
            "gen_len_mean": 800.0, "truncation_rate": 0.01, "utilization": 0.9, "grad_norm": 1.0,
            "utilization_source": "gpu", "lr": 1e-6, "batch_size": 64, "device_hours": n / 100}
    base.update(metrics)
    return base


def steps(first: int, last: int, seed: int = 0, **metrics: Any) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [step(n, **{"loss": 0.5 + rng.gauss(0, 0.01), **metrics}) for n in range(first, last + 1)]


def validation(n: int, rate: float) -> dict[str, Any]:
    return {"type": "validation", "time": float(n), "step": n, "pass_rate": rate, "n": 100,
            "device_hours": n / 100}


def start(world: int = 8, **config: Any) -> dict[str, Any]:
    training = {"learning_rate": 1e-6, "batch_size": 512, "temperature": 0.05, "clip_low": 0.2,
                "clip_high": 0.28, "eval_interval": 100}
    training.update(config)
    return {"type": "run_start", "time": 0.0, "run": "t", "spec_sha256": "0" * 64, "world_size": world,
            "backend": "nccl", "device": "cuda", "notes": [], "config": {"training": training}}


def item(m: RunMonitor, item_id: str) -> tuple[str, str]:
    for items in m.snapshot().checklists.values():
        for i in items:
            if i.id == item_id:
                return i.status, i.evidence
    raise AssertionError(f"no item {item_id}")


def monitor(tmp_path: Path, events: list[dict[str, Any]]) -> RunMonitor:
    m = RunMonitor(tmp_path)
    m.feed(events)
    return m


def test_both_checklists_list_every_item_pending_before_any_event(tmp_path: Path) -> None:
    snap = RunMonitor(tmp_path).snapshot()
    assert [i.id for i in snap.checklists["during_training"]] == [
        "loss_stable", "performance_improving", "utilization_watched", "checkpoint_on_schedule",
        "anomalies_answered"]
    assert [i.id for i in snap.checklists["optimization"]] == [
        "hyperparameters_in_range", "dynamic_batch_sizing", "data_pipeline", "distributed_efficiency",
        "architecture_reviewed"]
    pending = {i.id for items in snap.checklists.values() for i in items if i.status == "pending"}
    assert pending >= {"loss_stable", "performance_improving", "utilization_watched",
                       "checkpoint_on_schedule", "anomalies_answered", "dynamic_batch_sizing",
                       "data_pipeline", "distributed_efficiency", "architecture_reviewed"}


# --- during training ---------------------------------------------------------------------------


def test_loss_stable(tmp_path: Path) -> None:
    assert item(monitor(tmp_path, steps(1, 9)), "loss_stable")[0] == "pending"
    status, evidence = item(monitor(tmp_path, steps(1, 60)), "loss_stable")
    assert status == "pass" and "no spike or non-finite loss" in evidence
    spiked = steps(1, 60)
    spiked[55]["loss"] = 5.0
    status, evidence = item(monitor(tmp_path, spiked), "loss_stable")
    assert status == "fail" and "not answered" in evidence
    answered = [*spiked, {"type": "action", "time": 57.0, "step": 57, "kind": "lr_reduce",
                          "cause": "loss_spike: learning rate x0.5"}]
    status, evidence = item(monitor(tmp_path, answered), "loss_stable")
    assert status == "warn" and "answered" in evidence
    later = [*answered, *steps(61, 200, seed=3)]
    assert item(monitor(tmp_path, later), "loss_stable")[0] == "pass"  # the spike is history
    nan = [*steps(1, 30), step(31, loss=None, nonfinite=["loss"])]
    status, evidence = item(monitor(tmp_path, nan), "loss_stable")
    assert status == "fail" and "not finite" in evidence and "step 31" in evidence


@pytest.mark.parametrize(("rates", "status", "word"), [
    ([0.3], "pending", "1 validation result so far"),
    ([0.3, 0.35, 0.4, 0.45], "pass", "improving"),
    ([0.4, 0.4, 0.4, 0.4], "warn", "flat"),
    ([0.45, 0.44, 0.43, 0.42], "warn", "slipping"),
    ([0.5, 0.5, 0.3, 0.3], "fail", "dropped"),
])
def test_performance_trend(tmp_path: Path, rates: list[float], status: str, word: str) -> None:
    events = [validation(100 * (i + 1), r) for i, r in enumerate(rates)]
    got, evidence = item(monitor(tmp_path, events), "performance_improving")
    assert got == status and word in evidence


def test_utilization_watched(tmp_path: Path) -> None:
    assert item(monitor(tmp_path, []), "utilization_watched")[0] == "pending"
    assert item(monitor(tmp_path, steps(1, 5, utilization=None)), "utilization_watched")[0] == "pending"
    status, evidence = item(monitor(tmp_path, steps(1, 30, utilization=None)), "utilization_watched")
    assert status == "fail" and "not reported" in evidence
    status, evidence = item(monitor(tmp_path, steps(1, 30, utilization=0.5)), "utilization_watched")
    assert status == "warn" and "50%" in evidence and "70%" in evidence
    status, evidence = item(monitor(tmp_path, steps(1, 30, utilization=0.85)), "utilization_watched")
    assert status == "pass" and "85% (gpu)" in evidence


def checkpoint(n: int) -> dict[str, Any]:
    return {"type": "checkpoint", "time": float(n), "step": n, "path": f"ckpt/{n}", "bytes": 2**30,
            "seconds": 3.5, "metric": None}


def test_checkpoint_on_schedule(tmp_path: Path) -> None:  # save interval 100 by default
    status, evidence = item(monitor(tmp_path, steps(1, 50)), "checkpoint_on_schedule")
    assert status == "pending" and "due at step 100" in evidence
    status, evidence = item(monitor(tmp_path, [*steps(1, 100), checkpoint(100), *steps(101, 150)]),
                            "checkpoint_on_schedule")
    assert status == "pass" and "step 100, 50 steps ago (1.0 GiB, written in 3.5 s)" in evidence
    status, evidence = item(monitor(tmp_path, [*steps(1, 100), checkpoint(100), *steps(101, 260)]),
                            "checkpoint_on_schedule")
    assert status == "warn" and "overdue" in evidence
    status, evidence = item(monitor(tmp_path, steps(1, 350)), "checkpoint_on_schedule")
    assert status == "fail" and "no checkpoint in 350 steps" in evidence


SMOKE_SPEC = """\
run: {name: smoke}
training: {batch_size: 16, group_size: 2, learning_rate: 1.0e-5, max_steps: 20, eval_interval: 10}
checkpoints: {save_interval: 10}
checklist:
  severity: {config.batch.range: "off", config.temperature.range: "off"}
"""


def _smoke_spec(tmp_path: Path) -> Spec:
    """A small smoke-run spec: batch 16, lr 1e-5, save every 10 steps, two range checks off."""
    path = tmp_path / "smoke.yaml"
    path.write_text(SMOKE_SPEC, encoding="utf-8")
    return load_spec(path)


def test_the_spec_sets_the_save_interval(tmp_path: Path) -> None:
    spec = _smoke_spec(tmp_path)
    m = RunMonitor(tmp_path, spec=spec)  # checkpoints.save_interval: 10
    m.feed([*steps(1, 10), checkpoint(10), *steps(11, 25)])
    status, evidence = item(m, "checkpoint_on_schedule")
    assert status == "warn" and "save interval 10 steps" in evidence


def test_anomalies_answered(tmp_path: Path) -> None:
    assert item(monitor(tmp_path, steps(1, 10)), "anomalies_answered") == (
        "pass", "no anomalies in 10 steps")
    low = steps(1, 20, utilization=0.5)
    status, evidence = item(monitor(tmp_path, low), "anomalies_answered")
    assert status == "warn" and "utilization_low (monitor) since step 1" in evidence
    status, _ = item(monitor(tmp_path, [*low, *steps(21, 150)]), "anomalies_answered")
    assert status == "fail"  # unanswered past the rule's cooldown
    answer = {"type": "batch_size", "time": 20.0, "step": 20, "old": 512, "new": 614,
              "reason": "utilization below target"}
    action = {"type": "action", "time": 20.0, "step": 20, "kind": "batch_grow",
              "cause": "utilization_low: batch 512 -> 614"}
    m = monitor(tmp_path, [*low, answer, action])
    status, evidence = item(m, "anomalies_answered")
    assert status == "pass" and "1 of 1 anomalies answered" in evidence
    snap = m.snapshot()
    assert snap.actions_total == 2 and [a["kind"] for a in snap.actions] == ["batch_size", "batch_grow"]
    assert snap.actions[0]["cause"] == "512 -> 614 completions: utilization below target"


def test_an_error_is_answered_by_a_recovery(tmp_path: Path) -> None:
    error = {"type": "error", "time": 5.0, "step": 5, "message": "NCCL timeout"}
    recovery = {"type": "recovery", "time": 6.0, "step": 0, "attempt": 1,
                "from_checkpoint": None, "reason": "worker restarted"}
    status, evidence = item(monitor(tmp_path, [*steps(1, 5), error]), "anomalies_answered")
    assert status == "warn" and "error (error) since step 5" in evidence
    assert item(monitor(tmp_path, [*steps(1, 5), error, recovery]), "anomalies_answered")[0] == "pass"


def test_an_acknowledgement_answers_an_alert_rule(tmp_path: Path) -> None:
    events = [*steps(1, 20, utilization=0.5), *steps(21, 300)]
    assert item(monitor(tmp_path, events), "anomalies_answered")[0] == "fail"
    sign_off(tmp_path, "ack:utilization_low", "ana", "data loader fixed at step 20")
    status, evidence = item(monitor(tmp_path, events), "anomalies_answered")
    assert status == "pass" and "acknowledged, signed off by ana" in evidence


# --- optimization ------------------------------------------------------------------------------


def test_hyperparameters_from_the_run_configuration(tmp_path: Path) -> None:
    status, evidence = item(monitor(tmp_path, [start()]), "hyperparameters_in_range")
    assert status == "pass" and "run_start" in evidence
    status, evidence = item(monitor(tmp_path, [start(learning_rate=3e-5)]), "hyperparameters_in_range")
    assert status == "warn" and "learning rate 3e-05 outside 1e-06-1e-05" in evidence


def test_hyperparameters_respect_checks_the_spec_switched_off(tmp_path: Path) -> None:
    spec = _smoke_spec(tmp_path)
    status, evidence = item(RunMonitor(tmp_path, spec=spec), "hyperparameters_in_range")
    # batch 16 and temperature 1.0 are outside the field's ranges, but the smoke spec turns
    # those two checks off; learning rate and clipping remain.
    assert status == "pass" and "temperature" not in evidence and "learning rate 1e-05" in evidence


def test_dynamic_batch_sizing(tmp_path: Path) -> None:
    assert item(monitor(tmp_path, steps(1, 5)), "dynamic_batch_sizing")[0] == "pending"
    status, evidence = item(monitor(tmp_path, steps(1, 100, utilization=0.9)), "dynamic_batch_sizing")
    assert status == "pass" and "not needed" in evidence
    status, evidence = item(monitor(tmp_path, steps(1, 100, utilization=0.5)), "dynamic_batch_sizing")
    assert status == "warn" and "dynamic_batch.enabled is off" in evidence
    grow = {"type": "batch_size", "time": 50.0, "step": 50, "old": 512, "new": 614, "unit": "completions",
            "reason": "mean efficiency 0.50 over 10 steps < target 0.8"}
    status, evidence = item(monitor(tmp_path, [*steps(1, 50, utilization=0.5), grow]), "dynamic_batch_sizing")
    assert status == "pass" and "512 -> 614 at step 50" in evidence
    too_far = {**grow, "new": 4096}
    status, evidence = item(monitor(tmp_path, [*steps(1, 50), too_far]), "dynamic_batch_sizing")
    assert status == "warn" and "past the maximum batch size 2048" in evidence


def test_data_pipeline(tmp_path: Path) -> None:
    assert item(monitor(tmp_path, []), "data_pipeline")[0] == "pending"
    assert item(monitor(tmp_path, steps(1, 20, utilization=0.9)), "data_pipeline")[0] == "pass"
    status, evidence = item(monitor(tmp_path, steps(1, 20, utilization=0.4)), "data_pipeline")
    assert status == "warn" and "data_wait_frac" in evidence
    assert item(monitor(tmp_path, steps(1, 20, data_wait_frac=0.05)), "data_pipeline")[0] == "pass"
    assert item(monitor(tmp_path, steps(1, 20, data_wait_frac=0.3)), "data_pipeline")[0] == "warn"
    status, evidence = item(monitor(tmp_path, steps(1, 20, data_wait_frac=0.6)), "data_pipeline")
    assert status == "fail" and "waiting for data 60%" in evidence


def test_distributed_efficiency(tmp_path: Path) -> None:
    assert item(monitor(tmp_path, []), "distributed_efficiency")[0] == "pending"
    assert item(monitor(tmp_path, [start(world=1)]), "distributed_efficiency") == (
        "pass", "one rank: no collectives to check")
    assert item(monitor(tmp_path, [start(world=8)]), "distributed_efficiency")[0] == "pending"
    status, evidence = item(monitor(tmp_path, [start(world=8), *steps(1, 20, utilization=0.9)]),
                            "distributed_efficiency")
    assert status == "pass" and "8 ranks at 90%" in evidence
    assert item(monitor(tmp_path, [start(world=8), *steps(1, 20, utilization=0.3)]),
                "distributed_efficiency")[0] == "warn"


def test_distributed_efficiency_from_the_network_checks_of_the_attestation(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parent.parent / "examples" / "cpu-smoke.yaml"
    spec_path = tmp_path / "run.yaml"
    spec_path.write_text(example.read_text())
    attestation = {"report": {"results": [{"id": "network.link_speed", "status": "pass"},
                                          {"id": "network.allreduce_busbw", "status": "fail"}]}}
    attestation_path(spec_path).write_text(json.dumps(attestation))
    m = RunMonitor(tmp_path, spec=load_spec(spec_path))
    m.feed([start(world=2)])
    status, evidence = item(m, "distributed_efficiency")
    assert status == "fail" and "network.allreduce_busbw fail" in evidence


def test_architecture_review_is_a_manual_sign_off(tmp_path: Path) -> None:
    status, evidence = item(RunMonitor(tmp_path), "architecture_reviewed")
    assert status == "pending" and "--sign-off architecture_reviewed" in evidence
    path = sign_off(tmp_path, "architecture_reviewed", "ana", "GQA heads and RoPE scaling checked")
    assert path == tmp_path / SIGNOFFS_FILE
    status, evidence = item(RunMonitor(tmp_path), "architecture_reviewed")
    assert status == "pass" and evidence.startswith("signed off by ana at ")
    assert evidence.endswith(": GQA heads and RoPE scaling checked")


def test_a_sign_off_lifts_warn_and_pending_but_never_a_fail(tmp_path: Path) -> None:
    sign_off(tmp_path, "data_pipeline", "ana", "loader profiled")
    sign_off(tmp_path, "dynamic_batch_sizing", "ana", "batch fixed on purpose")
    m = monitor(tmp_path, steps(1, 100, data_wait_frac=0.6, utilization=0.5))
    assert item(m, "data_pipeline")[0] == "fail"
    status, evidence = item(m, "dynamic_batch_sizing")
    assert status == "pass" and "signed off by ana" in evidence


def test_sign_off_refuses_unknown_items_and_missing_names(tmp_path: Path) -> None:
    with pytest.raises(PreflightError, match="not a sign-off item; use one of hyperparameters_in_range"):
        sign_off(tmp_path, "loss_stable", "ana")
    with pytest.raises(PreflightError, match="--by NAME"):
        sign_off(tmp_path, "architecture_reviewed", "  ")
    with pytest.raises(PreflightError, match="no such run directory"):
        sign_off(tmp_path / "missing", "architecture_reviewed", "ana")
    with pytest.raises(PreflightError, match="no alert rule 'nope'"):
        sign_off(tmp_path, "ack:nope", "ana", engine_rules=["loss_spike"])


def test_a_broken_signoffs_file_reads_as_none_and_is_rewritten(tmp_path: Path) -> None:
    (tmp_path / SIGNOFFS_FILE).write_text("{not json")
    m = RunMonitor(tmp_path)
    assert item(m, "architecture_reviewed")[0] == "pending"
    assert m.signoffs.problem is not None and "unreadable" in m.signoffs.problem
    sign_off(tmp_path, "architecture_reviewed", "ana")
    assert item(m, "architecture_reviewed")[0] == "pass"


def test_a_percentage_next_to_its_threshold_never_reads_the_same_as_it() -> None:
    from preflight.monitor.checklists import _pct

    assert _pct(0.796, 0.8) == "79.6%"  # not "80%, below the 80% target"
    assert _pct(0.5, 0.8) == "50%" and _pct(0.8, 0.8) == "80%" and _pct(0.796) == "80%"
