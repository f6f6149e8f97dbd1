"""The basic algorithm test (`--level active`): a few RL steps of the spec's algorithm on the tiny model.

The steps run in a child process (``python -m runner.smoke SPEC --json``) so that ``preflight check``
never imports torch itself; the child is killed if the check times out or the user presses Ctrl-C.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
from typing import Any

from ..entrypoint import module_command
from ..probes_active.cleanup import stop, track
from ..registry import Context, check
from ..result import Outcome, errored, failed, passed
from ._framework import launched_by_framework

SMOKE_TIMEOUT_S = 240  # a cold torch import plus three tiny steps take ~10-20 s on 2 CPU cores
SMOKE_STEPS = 3


@check("algo.smoke", "Basic algorithm test: a few RL steps on the tiny model", "active",
       timeout_s=SMOKE_TIMEOUT_S + 30)
def algo_smoke(ctx: Context) -> Outcome:
    """Runs the spec's algorithm (loss, clipping, aggregation, advantages, filters, KL) for three
    updates on the built-in tiny model and the spec's train data. Passes when the verifier scores
    reference answers above corrupted ones (the reward is not degenerate), every loss and gradient
    norm is finite, and the parameters moved. One completion of each group is the reference
    answer, so a random model still gets a gradient; see runner/smoke.py. Skipped for a run a
    framework launches (trainer:): the test runs the built-in runner's algorithm, not the framework's."""
    skip = launched_by_framework(ctx, "the basic algorithm test (three updates of the built-in runner's algorithm)")
    if skip is not None:
        return skip
    expected = "finite losses and gradients, a reward that tells right from wrong, parameters that move"
    missing = [m for m in ("torch", "transformers", "runner") if importlib.util.find_spec(m) is None]
    if missing:
        return failed(f"cannot run: {', '.join(missing)} not installed", expected,
                      "install the runner: pip install 'rl-preflight[runner]' (on a CPU machine "
                      "install torch first, see README.md), or waive algo.smoke with a reason")
    # this installation's runner, whatever runner/ package the spec's folder holds
    cmd = module_command("runner.smoke", str(ctx.spec.path.resolve()), "--json", "--steps", str(SMOKE_STEPS))
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=str(ctx.spec.path.parent))
    track(proc)
    try:
        out, err = proc.communicate(timeout=SMOKE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return errored(f"no result within {SMOKE_TIMEOUT_S} s",
                       "run `python -m runner.smoke SPEC` by hand to see where it hangs")
    finally:
        stop(proc)
    result = _parse(out)
    if result is None:
        tail = err.decode(errors="replace").strip().splitlines()[-3:]
        return errored(f"the smoke run exited {proc.returncode} without a result: {' | '.join(tail)}",
                       "run `python -m runner.smoke SPEC` to see the whole error")
    steps = result.get("steps") or []
    evidence = {k: result.get(k) for k in ("reward_reference", "reward_corrupted", "policy_pass_rate",
                                           "param_change", "seconds", "algorithm")}
    evidence["steps"] = steps
    losses = ", ".join(f"{s['loss']:.3g}" if s.get("loss") is not None else "nan" for s in steps)
    found = (f"{len(steps)} steps, losses [{losses}], parameters moved "
             f"{(result.get('param_change') or 0.0):.1e} (relative)")
    if result.get("ok"):
        return passed(found, expected, **evidence)
    problems = "; ".join(result.get("problems") or ["unknown problem"])
    return failed(f"{found}; {problems}", expected,
                  "fix the algorithm settings named above (run `python -m runner.smoke SPEC` to "
                  "reproduce), or waive algo.smoke with a reason", **evidence)


def _parse(out: bytes) -> dict[str, Any] | None:
    for line in reversed(out.decode(errors="replace").splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                return None
            return value if isinstance(value, dict) else None
    return None
