"""Load a run spec: read, parse, validate against the schema, and fill in defaults and the preset.

Layering, lowest first: the schema's defaults, the stage preset, the user's spec. A spec therefore
only says what differs. Relative paths in a spec are taken from the current working directory, as
training launchers do.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import SpecError, SpecProblem
from .presets import DEFAULT_RULES, STAGES, Stage
from .schemas import load_schema, schema_defaults, validation_errors
from .yamlio import Path_, json_path, load_yaml, read_text

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError


@dataclass(frozen=True)
class Spec:
    """A validated run spec with every default filled in."""

    path: Path
    user: dict[str, Any]  # as written in the file
    data: dict[str, Any]  # resolved: defaults < stage preset < user
    lines: dict[Path_, int] = field(default_factory=dict, compare=False, repr=False)
    # waivers given at check time (--waive, the TUI): they end the data's waiver list, count for
    # the checks, and are recorded in the attestation, but are not part of the spec's identity
    extra_waivers: int = field(default=0, compare=False)
    # what to do with a run dir that holds a run, chosen at check time (--resume / --fresh, the
    # console): read by storage.run_dir, recorded in its result; not part of the spec's identity
    run_dir_choice: str | None = field(default=None, compare=False)

    def get(self, dotted: str, default: Any = None) -> Any:
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    def line_at(self, path: tuple[str | int, ...]) -> int | None:
        """The line of a path given as parts (keys may contain dots, like check ids)."""
        return _nearest_line(self.lines, path)

    @property
    def name(self) -> str:
        return str(self.data["run"]["name"])

    @property
    def stage(self) -> Stage | None:
        return STAGES.get(self.data["run"]["stage"])

    @property
    def framework(self) -> str | None:
        """The framework that launches the run (trainer.framework: verl, trl, openrlhf), or None
        when the built-in runner does."""
        trainer = self.data.get("trainer")
        return str(trainer["framework"]) if isinstance(trainer, dict) and trainer.get("framework") else None

    @property
    def uses_gpus(self) -> bool:
        """The run trains on GPUs: hardware.gpu_required and at least one GPU per node."""
        hw = self.data["hardware"]
        return bool(hw["gpu_required"]) and int(hw["gpus_per_node"]) > 0

    @property
    def world_size(self) -> int:
        """Training ranks: every GPU of every node, or the CPU workers of a GPU-less run."""
        hw = self.data["hardware"]
        if not self.uses_gpus:
            return int(self.data["distributed"]["cpu_workers"])
        return int(hw["nodes"] * hw["gpus_per_node"])

    def expand(self, template: str) -> Path:
        return Path(template.replace("{name}", self.name))

    @property
    def run_dir(self) -> Path:
        return self.expand(self.data["run"]["run_dir"])

    @property
    def checkpoint_dir(self) -> Path:
        return self.expand(self.data["storage"]["checkpoint_dir"])

    @property
    def sha256(self) -> str:
        """Hash of the resolved spec in canonical JSON: equal for equal meaning, whatever the layout.

        Check-time waivers are left out, so the runner, which loads the file alone, finds the
        hash that the attestation of a `check --waive` recorded."""
        data = self.data
        if self.extra_waivers:
            data = {k: v for k, v in data.items() if k != "waivers"}
            if "waivers" in self.user:
                data["waivers"] = self.data["waivers"][:-self.extra_waivers]
        return canonical_sha256(data)


def canonical_sha256(data: Any) -> str:
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def load_spec(path: str | Path, extra_waivers: list[dict[str, Any]] | None = None) -> Spec:
    """Read and validate a run spec, or raise a SpecError/InputFileError that says what to fix."""
    path = Path(path)
    shown = str(path)
    text = read_text(path)
    data, lines = load_yaml(text, shown)
    if not isinstance(data, dict):
        kind = type(data).__name__ if data is not None else "nothing"
        raise SpecError(shown, [SpecProblem(
            f"the top level must be a mapping of sections (run:, hardware:, ...), found {kind}",
            line=1, rule="type", hint="start from `preflight init`")])
    problems = schema_problems(data, lines)
    if problems:
        raise SpecError(shown, problems)
    user = copy.deepcopy(data)
    if extra_waivers:
        data = {**data, "waivers": list(data.get("waivers", [])) + extra_waivers}
    resolved = resolve(data)
    return Spec(path=path, user=user, data=resolved, lines=lines, extra_waivers=len(extra_waivers or []))


def resolve(user: dict[str, Any]) -> dict[str, Any]:
    """Layer the schema defaults, the stage preset and the user's values."""
    base = schema_defaults(load_schema("runspec"))
    base["monitoring"]["rules"] = copy.deepcopy(DEFAULT_RULES)
    stage = STAGES.get(user.get("run", {}).get("stage", base["run"]["stage"]))
    if stage is not None:
        base = deep_merge(base, stage.preset)
        base["budget"].setdefault("gpu_hours_min", stage.gpu_hours.low)
        if stage.gpu_hours.high is not None:
            base["budget"].setdefault("gpu_hours_max", stage.gpu_hours.high)
    user = {k: v for k, v in user.items() if k != "$schema"}
    merged = deep_merge(base, user)
    # A package set to null in the spec drops it from the default stack.
    merged["stack"]["packages"] = {k: v for k, v in merged["stack"]["packages"].items() if v is not None}
    rule_defaults = {"every_steps": 1, "cooldown_steps": 100, "severity": "warn"}
    merged["monitoring"]["rules"] = [{**rule_defaults, **r} for r in merged["monitoring"]["rules"]]
    return merged


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Merge mappings recursively; lists and scalars in ``over`` replace those in ``base``."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# --- schema errors, located and explained -------------------------------------------------------


def schema_problems(data: Any, lines: dict[Path_, int]) -> list[SpecProblem]:
    return [_explain(err, lines) for err in validation_errors(data, "runspec")]


def _nearest_line(lines: dict[Path_, int], path: tuple[Any, ...]) -> int | None:
    path = tuple(path)
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())


def _explain(err: ValidationError, lines: dict[Path_, int]) -> SpecProblem:
    path = tuple(err.absolute_path)
    rule = str(err.validator)
    message, hint = err.message, ""
    if rule == "additionalProperties" and isinstance(err.instance, dict):
        allowed = list(err.schema.get("properties", {}))
        extras = [k for k in err.instance if k not in allowed]
        if extras:
            key = str(extras[0])
            path = path + (key,)
            message = f"unknown key '{key}'"
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'?" if close else f"allowed keys here: {', '.join(allowed)}"
            if len(extras) > 1:
                message += f" (and {', '.join(repr(str(k)) for k in extras[1:])})"
    elif rule == "enum":
        options = [str(o) for o in err.validator_value]
        message = f"{err.instance!r} is not one of: {', '.join(options)}"
        close = difflib.get_close_matches(str(err.instance), options, n=1, cutoff=0.5)
        if close:
            hint = f"did you mean '{close[0]}'?"
    elif rule == "type":
        expected = err.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        message = f"expected {expected}, found {_kind(err.instance)} {_short(err.instance)}"
    elif rule == "required":
        hint = "add it; `preflight init` writes a complete starter spec"
    elif rule in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        hint = f"see `preflight schema runspec` for {json_path(path)}"
    return SpecProblem(message=message, path=json_path(path), line=_nearest_line(lines, path), rule=rule, hint=hint)


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."
