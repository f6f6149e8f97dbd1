"""verl's own validation of a corpus case, run on CPU: Hydra composes verl's config from the case's
command-line overrides exactly as `python3 -m verl.trainer.main_ppo` does, then verl's
``validate_config`` (verl/utils/config.py) runs on it. That is everything verl checks before it
starts Ray workers, loads models and takes GPUs; what it does not catch there surfaces later (the
case's ``extra["surfaces"]``, from its thread).

verl is imported in a child process from VERL_PATH (default /tmp/verl-target: verl 0.9.1 and the
few packages its config modules import, installed with ``pip install --no-deps --target``), so the
benchmark's own process never imports it and the project's environment is not changed. Each call's
``seconds`` is that child's wall time: Python start-up, verl's imports, Hydra's compose and the
validation. A real launch also runs ``ray.init`` before validate_config (bench_framework_gate.py
measures that once, separately).

    validate(case) -> {"caught": bool, "when": str, "seconds": float, "error": str}
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
VERL_PATH = os.environ.get("VERL_PATH", "/tmp/verl-target")
ENTRY = "verl.trainer.main_ppo"
WHEN_VALIDATE = "validate_config, inside verl's TaskRunner after ray.init (before datasets, models, GPUs)"
WHEN_HYDRA = "Hydra's command-line parsing, at start"


def overrides(case: Any, home: Path) -> list[str]:
    """The case's Hydra overrides, read from its launch script as bash would (preflight's reader)."""
    sys.path.insert(0, str(REPO))
    from preflight.frameworks.shell import read_script

    script = read_script(case.source, case.source_name, environ={"HOME": str(home)})
    cmd = script.find(lambda argv: ENTRY in argv)
    if cmd is None:
        raise ValueError(f"{case.id}: no {ENTRY} command")
    return [w for w in cmd.argv[cmd.argv.index(ENTRY) + 1:] if not w.startswith("--")]


def validate(case: Any) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        if case.files is not None:
            case.files(home)  # the data files, so verl sees the same paths
        args = json.dumps({"overrides": overrides(case, home)})
        env = {**os.environ, "PYTHONPATH": VERL_PATH, "HOME": str(home), "HYDRA_FULL_ERROR": "1"}
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, __file__, "--child"], input=args, capture_output=True, text=True,
                              env=env, timeout=600, check=False)
        seconds = time.perf_counter() - start
    surfaces = str(case.extra.get("surfaces", "later, on the GPUs"))
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        return {"caught": False, "when": f"not run: verl could not run here ({tail})", "seconds": seconds,
                "error": tail}
    verdict = json.loads(lines[-1])
    if verdict["stage"] == "import":
        return {"caught": False, "when": f"not run: {verdict['error']}", "seconds": seconds, "error": verdict["error"]}
    if verdict["stage"] == "ok":
        return {"caught": False, "when": f"not by validate_config; {surfaces}", "seconds": seconds, "error": ""}
    when = WHEN_HYDRA if verdict["stage"] == "compose" else WHEN_VALIDATE
    return {"caught": True, "when": when, "seconds": seconds, "error": verdict["error"]}


def _child() -> None:
    """In the child: compose and validate; one JSON line with the stage that stopped it."""
    args = json.loads(sys.stdin.read())
    try:
        import verl
        from hydra import compose, initialize_config_dir
        from verl.utils.config import validate_config
    except Exception as exc:  # noqa: BLE001 - any import failure is the verdict "could not run"
        print(json.dumps({"stage": "import", "error": f"{type(exc).__name__}: {exc}"}))
        return
    config_dir = str(Path(verl.__file__).parent / "trainer" / "config")
    try:
        with initialize_config_dir(config_dir=config_dir, version_base=None):
            cfg = compose("ppo_trainer", overrides=args["overrides"])
    except Exception as exc:  # noqa: BLE001 - Hydra refusing the overrides is verl refusing the launch
        print(json.dumps({"stage": "compose", "error": f"{type(exc).__name__}: {exc}"[:400]}))
        return
    actor = cfg.actor_rollout_ref.actor
    use_ref = bool(actor.use_kl_loss) or bool(cfg.algorithm.use_kl_in_reward)
    use_critic = str(cfg.algorithm.adv_estimator) == "gae"
    try:
        validate_config(cfg, use_reference_policy=use_ref, use_critic=use_critic)
    except Exception as exc:  # noqa: BLE001 - what validate_config raises is what the user would see
        print(json.dumps({"stage": "validate", "error": f"{type(exc).__name__}: {exc}"[:400]}))
        return
    print(json.dumps({"stage": "ok", "error": ""}))


if __name__ == "__main__" and sys.argv[1:] == ["--child"]:
    _child()
