"""Rewards: score a batch of completions against their dataset rows.

A reward is any callable ``reward(prompts, completions, rows) -> list[float]`` (the ``Reward``
protocol): one float per completion, in order; ``rows[i]`` is the dataset row that
``prompts[i]`` came from and carries what grading needs (``"answer"``, ``"tests"``, ...).

Built-ins (``get_reward(name)`` / ``load_reward(name)``):

- ``"math"``: 1.0 when the last number in the completion equals ``row["answer"]`` exactly, after
  normalization (``preflight.arithmetic.verify_answer``: "$1,234." equals "1234"), else 0.0.
- ``"code"``: 1.0 when the completion's code passes every one of ``row["tests"]`` (a list of
  statements such as asserts, or one test script) in ``runner.sandbox.run_python``, else 0.0.
  The code is the last fenced Python block of the completion when it has one (see
  ``extract_code``). Completions run concurrently, ``min(8, CPUs)`` at a time.

Other domains plug in by name, with ``register_reward``::

    @register_reward("length")
    def length_reward(prompts, completions, rows):
        return [min(len(c) / 1000, 1.0) for c in completions]

or from any importable module, with ``load_reward("my_pkg.rewards:length_reward")``. A registered
or loaded *class* is instantiated (with the options given to ``get_reward``/``load_reward``); a
function or any other callable object is used as it is.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar, runtime_checkable

from preflight.arithmetic import verify_answer
from preflight.errors import PreflightError

from .sandbox import SandboxResult, run_python

log = logging.getLogger(__name__)

MAX_SANDBOX_WORKERS = 8


@runtime_checkable
class Reward(Protocol):
    """Scores a batch: one float per completion, in the order given."""

    def __call__(self, prompts: list[str], completions: list[str],
                 rows: list[dict]) -> list[float]: ...


T = TypeVar("T")
_REGISTRY: dict[str, Any] = {}


def register_reward(name: str, *, replace: bool = False) -> Callable[[T], T]:
    """Decorator: register a reward function, callable object or class under ``name``.

    Registering a different object under a taken name is an error unless ``replace``; the same
    object, or a re-definition from the same module (a reload), just replaces the entry.
    """
    if not isinstance(name, str) or not name or ":" in name:
        raise ValueError(f"reward name must be a non-empty string without ':', got {name!r}")

    def decorate(obj: T) -> T:
        if not callable(obj):
            raise TypeError(f"register_reward({name!r}): {obj!r} is not callable")
        old = _REGISTRY.get(name)
        if old is not None and old is not obj and not replace and _origin(old) != _origin(obj):
            raise ValueError(
                f"a reward named {name!r} is already registered ({_describe(old)}); "
                f"pass replace=True to replace it")
        _REGISTRY[name] = obj
        return obj

    return decorate


def reward_names() -> list[str]:
    """The registered reward names, sorted."""
    return sorted(_REGISTRY)


def get_reward(name: str, **options: Any) -> Reward:
    """The registered reward ``name``; a registered class is instantiated with ``options``."""
    try:
        obj = _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown reward {name!r}; known rewards: {', '.join(reward_names())} "
                       f"(or give a plug-in as 'module:attr')") from None
    return _instantiate(obj, options, f"reward {name!r}")


def load_reward(spec: str, **options: Any) -> Reward:
    """A reward by registered name (``"math"``) or from a plug-in (``"my_pkg.rewards:attr"``).

    ``attr`` may be dotted (``"mod:Class.method"``). A class is instantiated with ``options``.
    Raises ``KeyError`` for an unknown name, ``ValueError`` for a malformed spec, ``ImportError``
    when the module cannot be imported, ``AttributeError`` when it lacks ``attr``, and
    ``TypeError`` when the object is not a reward (not callable, or the wrong arguments).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"reward spec must be a name or 'module:attr', got {spec!r}")
    spec = spec.strip()
    if ":" not in spec:
        return get_reward(spec, **options)
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr or ":" in attr:
        raise ValueError(f"reward spec {spec!r} is malformed; expected 'module:attr', "
                         f"e.g. 'my_pkg.rewards:length_reward'")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ImportError(f"cannot import reward plug-in module {module_name!r} (from {spec!r}): "
                          f"{type(exc).__name__}: {exc}") from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AttributeError(f"reward plug-in {spec!r}: {module_name!r} has no attribute "
                                 f"{attr!r}") from None
    reward = _instantiate(obj, options, f"reward plug-in {spec!r}")
    _check_signature(reward, spec)
    return reward


class RewardError(PreflightError):
    """The spec names a reward that cannot be loaded: the runner prints this and exits 2."""


def reward_for(spec: Any) -> Reward:
    """The run's reward: ``run.reward`` (a name or a ``module:attr`` plug-in) when set, else the
    registered reward of ``run.domain``. Raises RewardError naming the spec field when it cannot
    be loaded (only the active check level tries that before a run)."""
    field = "run.reward" if spec.get("run.reward") else "run.domain"
    try:
        return load_reward(str(spec.get("run.reward") or spec.get("run.domain", "math")))
    except (KeyError, ValueError, ImportError, AttributeError, TypeError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc  # no repr quotes
        raise RewardError(f"{spec.path}: {field}: {message}") from exc


def _instantiate(obj: Any, options: dict[str, Any], what: str) -> Reward:
    if isinstance(obj, type):
        try:
            obj = obj(**options)
        except TypeError as exc:
            raise TypeError(f"{what}: cannot create {obj.__name__}({_kwargs(options)}): {exc}") from exc
    elif options:
        raise TypeError(f"{what} is not a class and takes no options (got {_kwargs(options)})")
    if not callable(obj):
        raise TypeError(f"{what} is a {type(obj).__name__}, not a reward: expected a function "
                        f"(prompts, completions, rows) -> list[float], or a class or object "
                        f"with such a __call__")
    return obj


def _check_signature(reward: Any, spec: str) -> None:
    try:
        sig = inspect.signature(reward)
    except (TypeError, ValueError):  # builtins and the like: nothing to check
        return
    try:
        sig.bind([], [], [])
    except TypeError as exc:
        raise TypeError(f"reward plug-in {spec!r} cannot be called as reward(prompts, completions, "
                        f"rows): {exc} (signature {sig})") from None


def _origin(obj: Any) -> tuple[str | None, str | None]:
    return getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)


def _describe(obj: Any) -> str:
    module, qualname = _origin(obj)
    return f"{module}.{qualname}" if module and qualname else repr(obj)


def _kwargs(options: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in options.items())


def _check_batch(prompts: Sequence[str], completions: Sequence[str], rows: Sequence[dict]) -> None:
    if not len(prompts) == len(completions) == len(rows):
        raise ValueError(f"a reward batch needs one prompt and one row per completion; got "
                         f"{len(prompts)} prompts, {len(completions)} completions, {len(rows)} rows")


def _field(row: dict, key: str, index: int, reward: str) -> Any:
    try:
        return row[key]
    except (KeyError, TypeError):
        keys = sorted(row) if isinstance(row, dict) else type(row).__name__
        raise KeyError(f"{reward} reward: row {index} (id {_row_id(row)}) has no {key!r} field "
                       f"(it has {keys})") from None


def _row_id(row: Any) -> str:
    return repr(row.get("id")) if isinstance(row, dict) else "?"


# --- math ----------------------------------------------------------------------------------------


@register_reward("math")
def math_reward(prompts: list[str], completions: list[str], rows: list[dict]) -> list[float]:
    """1.0 when the completion's last number equals ``row["answer"]`` exactly (normalized)."""
    _check_batch(prompts, completions, rows)
    return [1.0 if verify_answer(completion, str(_field(row, "answer", i, "math"))) else 0.0
            for i, (completion, row) in enumerate(zip(completions, rows, strict=True))]


# --- code ----------------------------------------------------------------------------------------

# An opening fence with an optional language tag, then the body up to a closing fence or the end
# (a completion cut off by the token limit leaves its last block open).
_FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+.#-]*)[^\n]*\n(.*?)(?:^[ \t]*```[ \t]*$|\Z)",
                    re.MULTILINE | re.DOTALL)
_PYTHON_TAGS = {"", "python", "py", "python3", "py3"}


def extract_code(completion: str) -> str:
    """The code in a completion: the last fenced block tagged python (or untagged); else the
    last fenced block of any language; else the whole completion."""
    blocks = [(m.group(1).lower(), m.group(2)) for m in _FENCE.finditer(completion or "")]
    python = [body for tag, body in blocks if tag in _PYTHON_TAGS]
    if python:
        return python[-1]
    if blocks:
        return blocks[-1][1]
    return completion or ""


def default_workers() -> int:
    """``min(8, usable CPUs)``: how many sandboxes the code reward runs at once."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_SANDBOX_WORKERS, cpus))


def _tests(row: dict, index: int) -> str | list[str]:
    tests = _field(row, "tests", index, "code")
    if isinstance(tests, tuple):
        tests = list(tests)
    if not (isinstance(tests, str) or (isinstance(tests, list)
                                       and all(isinstance(t, str) for t in tests))):
        raise TypeError(f"code reward: row {index} (id {_row_id(row)}): 'tests' must be a test "
                        f"script or a list of test statements, got {type(tests).__name__}")
    if not (tests.strip() if isinstance(tests, str) else any(t.strip() for t in tests)):
        raise ValueError(f"code reward: row {index} (id {_row_id(row)}) has no tests; every "
                         f"completion that runs would pass")
    return tests


@register_reward("code")
class CodeReward:
    """1.0 when the completion's code passes all of ``row["tests"]`` in the sandbox, else 0.0.

    ``row["tests"]`` is a list of test statements (asserts) or one test script. Completions run
    concurrently in ``max_workers`` threads (default ``min(8, CPUs)``), each in its own sandboxed
    process with ``timeout_s`` of wall time and ``memory_mb`` of address space, so a batch takes
    about ``ceil(batch / workers)`` sandbox runs of time, not ``batch``. Nothing a completion does
    makes the call raise or hang: a sandbox that cannot run at all scores 0.0 and is logged.
    """

    def __init__(self, timeout_s: float = 5.0, memory_mb: int = 512,
                 max_workers: int | None = None) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if memory_mb <= 0:
            raise ValueError(f"memory_mb must be > 0, got {memory_mb}")
        self.timeout_s = float(timeout_s)
        self.memory_mb = int(memory_mb)
        self.max_workers = max_workers or default_workers()

    def results(self, completions: list[str], rows: list[dict]) -> list[SandboxResult]:
        """One ``SandboxResult`` per completion, in order (passed, reason, output tail, time)."""
        if len(completions) != len(rows):
            raise ValueError(f"{len(completions)} completions but {len(rows)} rows")
        jobs = [(extract_code(c), _tests(row, i)) for i, (c, row) in enumerate(zip(completions, rows, strict=True))]
        if not jobs:
            return []
        workers = max(1, min(self.max_workers, len(jobs)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="code-reward") as pool:
            return list(pool.map(lambda job: self._run_one(*job), jobs))

    def _run_one(self, code: str, tests: str | list[str]) -> SandboxResult:
        try:
            return run_python(code, tests, timeout_s=self.timeout_s, memory_mb=self.memory_mb)
        except Exception as exc:  # run_python reports its own failures; this is a last resort
            log.warning("code reward: sandbox failed: %s", exc, exc_info=True)
            return SandboxResult(False, f"sandbox error: {type(exc).__name__}: {exc}", "", 0.0)

    def __call__(self, prompts: list[str], completions: list[str],
                 rows: list[dict]) -> list[float]:
        _check_batch(prompts, completions, rows)
        return [1.0 if r.passed else 0.0 for r in self.results(completions, rows)]

    def __repr__(self) -> str:
        return (f"CodeReward(timeout_s={self.timeout_s}, memory_mb={self.memory_mb}, "
                f"max_workers={self.max_workers})")
