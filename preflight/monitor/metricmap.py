"""Which key each trainer writes for the metrics the monitor judges (docs/monitoring.md has the table).

The monitor's own names (``MONITOR_METRICS``) are those of the runner's events: ``pass_rate`` is
the validation pass rate (the alert table and the ScaleRL fit read it), ``train_pass_rate`` the
training reward or score (plotted), then ``loss``, ``grad_norm``, ``gen_len_mean``,
``truncation_rate``, ``lr`` and ``utilization``.

Each framework maps a monitor metric to a list of key patterns tried in order; the first pattern
that matches any key of a record wins, and when it matches several keys (verl writes one
validation score per data source) their mean is taken. ``*`` in a pattern matches any run of
characters (slashes included). The keys below are the ones these trainers write, looked up in
their sources:

- verl: the metric dict of ``RayPPOTrainer.fit`` (``critic/score/mean``, ``actor/pg_loss``,
  ``response_length/clip_ratio``, ...), the same keys in its file logger and its TensorBoard
  logger; validation ``val-core/<data_source>/<acc|reward>/mean@N`` (older: ``val/test_score/<ds>``);
- TRL: ``GRPOTrainer.log`` keys in ``trainer_state.json``'s ``log_history`` (``reward``,
  ``completions/clipped_ratio``; validation with the ``eval_`` prefix); transformers' TensorBoard
  callback writes them as ``train/<key>`` and ``eval/<key>``;
- OpenRLHF: its TensorBoard logger writes ``train/<key>`` for the PPO status
  (``policy_loss``, ``reward``, ``response_length``, ``actor_lr``) and ``eval/<key>`` for the
  evaluation (``pass1``, ``<datasource>_pass1``, ``truncated_rate``).

A spec overrides any entry with ``monitoring.metric_map`` (a key pattern or a list of them per
monitor metric); the override replaces that metric's patterns and leaves the others.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

MONITOR_METRICS = ("pass_rate", "train_pass_rate", "loss", "grad_norm", "gen_len_mean",
                   "truncation_rate", "lr", "utilization")
# The step-event field each (non-validation) monitor metric fills.
STEP_FIELD = {"train_pass_rate": "pass_rate", "loss": "loss", "grad_norm": "grad_norm",
              "gen_len_mean": "gen_len_mean", "truncation_rate": "truncation_rate", "lr": "lr",
              "utilization": "utilization"}
FRAMEWORKS = ("verl", "trl", "openrlhf")

_TRL_KEYS: dict[str, tuple[str, ...]] = {
    "pass_rate": ("eval_reward",),
    "train_pass_rate": ("reward",),
    "loss": ("loss",),
    "grad_norm": ("grad_norm",),
    "gen_len_mean": ("completions/mean_length",),
    "truncation_rate": ("completions/clipped_ratio",),
    "lr": ("learning_rate",),
}


def _trl_with_tensorboard() -> dict[str, tuple[str, ...]]:
    """TRL's keys as trainer_state.json holds them, then as transformers' TensorBoard callback
    rewrites them (``eval_x`` -> ``eval/x``, anything else -> ``train/x``)."""
    out = {}
    for metric, keys in _TRL_KEYS.items():
        tb = tuple(f"eval/{k[5:]}" if k.startswith("eval_") else f"train/{k}" for k in keys)
        out[metric] = keys + tb
    return out


DEFAULT_MAPS: dict[str, dict[str, tuple[str, ...]]] = {
    "verl": {
        "pass_rate": ("val-core/*/acc/mean@*", "val-core/*/reward/mean@*", "val/test_score/*"),
        "train_pass_rate": ("critic/score/mean",),
        "loss": ("actor/pg_loss",),
        "grad_norm": ("actor/grad_norm",),
        "gen_len_mean": ("response_length/mean",),
        "truncation_rate": ("response_length/clip_ratio",),
        "lr": ("actor/lr",),
    },
    "trl": _trl_with_tensorboard(),
    "openrlhf": {
        "pass_rate": ("eval/pass1", "eval/*_pass1"),
        "train_pass_rate": ("train/reward",),
        "loss": ("train/policy_loss",),
        "grad_norm": ("train/actor_grad_norm",),
        "gen_len_mean": ("train/response_length",),
        "truncation_rate": ("train/truncated", "eval/truncated_rate"),
        "lr": ("train/actor_lr",),
    },
}

# Keys whose presence names the framework that wrote a TensorBoard log (the first tags seen).
_SIGNATURES = (
    ("verl", re.compile(r"^(actor/|critic/|val-core/|val-aux/|response_length/|timing_s/|perf/)")),
    ("trl", re.compile(r"^train/(completions/|rewards/|reward$|epoch$|loss$|learning_rate$)")),
    ("openrlhf", re.compile(r"^(train/(policy_loss|actor_lr|kl|return|total_length)|eval/pass1)$")),
)


def guess_framework(keys: Iterable[str]) -> str | None:
    """The framework whose key names these are, or None while none of them tells."""
    for key in keys:
        for name, pattern in _SIGNATURES:
            if pattern.match(key):
                return name
    return None


def _compile(pattern: str) -> re.Pattern[str] | str:
    """An exact key stays a string (a dict lookup); a pattern with ``*`` becomes a regex."""
    if "*" not in pattern:
        return pattern
    return re.compile("^" + ".*".join(re.escape(p) for p in pattern.split("*")) + "$")


@dataclass
class MetricMap:
    """The key patterns of one framework (with the spec's overrides), resolved against the keys a
    log actually holds. ``values(record)`` is called once per record, so the keys a pattern
    matches are worked out once per new key, not per record."""

    framework: str
    patterns: dict[str, tuple[str, ...]]
    overridden: tuple[str, ...] = ()
    _known: set[str] = field(default_factory=set)
    _groups: dict[str, list[list[str]]] = field(default_factory=dict)  # metric -> keys per pattern
    _compiled: dict[str, list[re.Pattern[str] | str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._compiled = {m: [_compile(p) for p in pats] for m, pats in self.patterns.items()}
        self._groups = {m: [[] for _ in pats] for m, pats in self.patterns.items()}

    @classmethod
    def for_framework(cls, framework: str, overrides: Mapping[str, Any] | None = None) -> MetricMap:
        if framework not in DEFAULT_MAPS:
            raise ValueError(f"unknown framework {framework!r} (known: {', '.join(FRAMEWORKS)})")
        patterns = dict(DEFAULT_MAPS[framework])
        changed = []
        for metric, value in (overrides or {}).items():
            patterns[metric] = (value,) if isinstance(value, str) else tuple(value)
            changed.append(metric)
        return cls(framework, patterns, tuple(changed))

    def _learn(self, keys: Iterable[str]) -> None:
        new = [k for k in keys if k not in self._known]
        self._known.update(new)
        for metric, compiled in self._compiled.items():
            groups = self._groups[metric]
            for i, pattern in enumerate(compiled):
                if isinstance(pattern, str):
                    if pattern in new:
                        groups[i].append(pattern)
                else:
                    groups[i].extend(k for k in new if pattern.match(k))

    def values(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """The monitor metrics this record holds: a float, NaN for a non-finite value, or the
        raw value when it is not a number (the caller reports it)."""
        if not self._known.issuperset(record):
            self._learn(record)
        out: dict[str, Any] = {}
        for metric, groups in self._groups.items():
            for keys in groups:
                present = [record[k] for k in keys if k in record]
                if present:
                    out[metric] = _mean(present)
                    break
        return out

    def describe(self) -> list[tuple[str, str]]:
        """(monitor metric, the patterns in order) for the docs and the text report."""
        return [(m, ", ".join(p)) for m, p in self.patterns.items()]


def _mean(values: list[Any]) -> Any:
    if len(values) == 1:
        value = values[0]
        if type(value) is float:
            return value
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value
    numbers = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(numbers) != len(values):
        return next(v for v in values if not isinstance(v, (int, float)) or isinstance(v, bool))
    if not all(math.isfinite(v) for v in numbers):
        return math.nan
    return sum(numbers) / len(numbers)
