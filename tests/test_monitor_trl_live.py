"""`preflight monitor` following a real TRL GRPOTrainer run live (CPU, the tiny local model, TensorBoard
logging on, completions cut at 4 tokens) and raising the truncation alert while the run goes on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("trl")
pytest.importorskip("tensorboard")

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_monitor_follows_a_live_trl_grpo_run_and_raises_the_truncation_alert(tmp_path: Path) -> None:
    out = tmp_path / "trl-out"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    monitor = subprocess.Popen(
        [sys.executable, "-m", "preflight", "monitor", str(out), "--source", "trl", "--format", "json",
         "--interval", "0.3", "--exit-when-idle", "10", "--fail-on-alert"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    trainer = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "trl_grpo_tiny.py"), str(out), "--steps", "30",
         "--step-delay", "0.3"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen_live: dict | None = None
    last: dict | None = None
    deadline = time.monotonic() + 400
    try:
        assert monitor.stdout is not None
        for line in monitor.stdout:
            last = json.loads(line)
            if seen_live is None and "truncation_high" in last["in_alert"] and trainer.poll() is None:
                seen_live = last  # raised while the trainer is still training
            if time.monotonic() > deadline:
                break
        code = monitor.wait(timeout=60)
        trainer_code = trainer.wait(timeout=120)
    finally:
        for proc in (monitor, trainer):
            if proc.poll() is None:
                proc.kill()
    assert trainer_code == 0, trainer.stderr.read() if trainer.stderr else ""
    assert seen_live is not None, f"no live truncation alert; last snapshot: {last}"
    alert = next(a for a in seen_live["alerts"] if a["rule"] == "truncation_high")
    assert alert["value"] > 0.10 and alert["source"] == "monitor"
    assert last is not None and last["last_step"] == 30  # followed to the end
    assert last["latest"]["truncation_rate"]["value"] > 0.5
    assert code == 1  # --fail-on-alert: the rule is still in alert at the end
    stderr = monitor.stderr.read() if monitor.stderr else ""
    assert "TensorBoard event files" in stderr and "Traceback" not in stderr
    assert "written by trl" in last["source"]
