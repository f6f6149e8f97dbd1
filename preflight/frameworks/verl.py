"""verl: read a launch script (``python3 -m verl.trainer.main_ppo key=value ...``) or a Hydra YAML
config, resolve it against verl's defaults, and map it into a run spec.

The defaults come from the installed verl when there is one (its shipped
``verl/trainer/config/_generated_ppo_trainer.yaml``, verl's own flattening of ppo_trainer.yaml
and the sub-configs its Hydra defaults list composes, found through ``importlib.util.find_spec``
without importing verl), else from the built-in table of a named version
(``preflight/frameworks/defaults/verl-<version>.yaml``, a verbatim copy of that file). Overrides are
applied as Hydra applies them (``preflight.frameworks.hydra``): a key verl's config does not have
is refused with the nearest keys verl has, as Hydra refuses it.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from . import verl_map
from .base import ImportedRun, ImportProblem, read_source
from .hydra import (
    Override,
    OverrideError,
    Resolver,
    all_keys,
    apply_override,
    lookup,
    parse_override,
)
from .shell import ShellScript, ShellSyntaxError, read_script

NAME = "verl"
ENTRY = "verl.trainer.main_ppo"
BUILTIN_VERSION = "0.9.1"
DEFAULTS_DIR = Path(__file__).parent / "defaults"
GENERATED = "_generated_ppo_trainer.yaml"

# What each verl version declares for the packages it runs with (its wheel's Requires-Dist; torch
# and vllm from the [vllm] extra, the FSDP + vLLM installation verl's docs describe).
REQUIREMENTS: dict[str, dict[str, str]] = {
    "0.9.1": {"transformers": ">=5.5.3,!=5.6.0,<5.11", "ray": ">=2.41.0", "tensordict": ">=0.8.0,!=0.9.0,<=0.10.0",
              "torch": "==2.11.0", "vllm": "==0.24.0"},
}


def import_source(path: str | Path, *, version: str | None = None,
                  environ: Mapping[str, str] | None = None) -> ImportedRun:
    """Read ``path`` (a launch script, or a .yaml/.yml Hydra config), resolve and map it."""
    path, _, text = read_source(path, "a verl launch script or Hydra YAML")
    env = dict(os.environ if environ is None else environ)
    defaults, version_used, origin, notes = load_defaults(version)
    command: list[str] | None = None
    cmd_env: dict[str, str] = {}
    if path.suffix in (".yaml", ".yml"):
        config = _from_yaml(text, path, defaults)
    else:
        config, command, cmd_env, script_notes = _from_script(text, path, defaults, env)
        notes += script_notes
    resolver = Resolver(config, env)
    resolved = resolver.resolve_all()
    notes += [f"left as written: {u}" for u in resolver.unresolved]
    if lookup(resolved, "actor_rollout_ref.rollout.name", None) == "???":
        raise ImportProblem(str(path), "actor_rollout_ref.rollout.name",
                            "verl requires the rollout engine and this configuration does not name it",
                            "add actor_rollout_ref.rollout.name=vllm (or sglang)")
    trainer: dict[str, Any] = {"framework": NAME, "version": version_used, "defaults": origin, "source": str(path.resolve()),
               "workdir": str(path.resolve().parent)}
    if command:
        trainer["command"] = command
    if cmd_env:
        trainer["env"] = cmd_env
    spec, map_notes = verl_map.to_spec(resolved, str(path), env, path.resolve().parent)
    spec["trainer"] = {**trainer, "config": resolved}
    return ImportedRun(spec=spec, notes=notes + map_notes)


# --- defaults ---------------------------------------------------------------------------------------


def installed_version() -> str | None:
    """verl's installed version from its metadata, or None; verl itself is never imported."""
    from importlib import metadata

    try:
        return metadata.version("verl")
    except metadata.PackageNotFoundError:
        return None


def _installed_config_dir() -> Path | None:
    try:
        found = importlib.util.find_spec("verl")
    except (ImportError, ValueError):
        return None
    if found is None or not found.submodule_search_locations:
        return None
    for location in found.submodule_search_locations:
        folder = Path(location) / "trainer" / "config"
        if folder.is_dir():
            return folder
    return None


def builtin_versions() -> list[str]:
    return sorted(p.stem.removeprefix("verl-") for p in DEFAULTS_DIR.glob("verl-*.yaml"))


def load_defaults(version: str | None) -> tuple[dict[str, Any], str, str, list[str]]:
    """(defaults tree, version, 'installed' | 'builtin', notes)."""
    notes: list[str] = []
    have = installed_version()
    folder = _installed_config_dir() if have else None
    if have and folder is not None and (version is None or version == have):
        tree = _installed_defaults(folder)
        if tree is not None:
            return tree, have, "installed", notes
        notes.append(f"verl {have} is installed but ships no {GENERATED} and composes its config from a Hydra "
                     f"defaults list, which is not followed here: the built-in defaults are used instead")
    wanted = version or BUILTIN_VERSION
    table = DEFAULTS_DIR / f"verl-{wanted}.yaml"
    if not table.is_file():
        raise ImportProblem("--version", wanted, f"no built-in verl defaults for version {wanted}"
                            + (f" (verl {have} is installed)" if have else ""),
                            f"built-in versions: {', '.join(builtin_versions())}; or install verl {wanted} "
                            "so its own defaults are read")
    if not have:
        notes.append(f"verl is not installed here: values not in the source are verl {wanted}'s defaults "
                     "(the built-in table); install verl to resolve against its own")
    elif version and version != have:
        notes.append(f"verl {have} is installed but --version {version} was asked for: its built-in defaults are used")
    return _read_yaml(table), wanted, "builtin", notes


def _installed_defaults(folder: Path) -> dict[str, Any] | None:
    generated = folder / GENERATED
    if generated.is_file():
        return _read_yaml(generated)
    flat = folder / "ppo_trainer.yaml"
    if flat.is_file():
        tree = _read_yaml(flat)
        if "defaults" not in tree:  # verl before the composed configs: one flat file
            return tree
    return None


def _read_yaml(path: Path) -> dict[str, Any]:
    tree = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(tree, dict):
        raise ImportProblem(str(path), "", "verl's defaults file is not a mapping", "reinstall verl")
    return tree


# --- sources ----------------------------------------------------------------------------------------


def _is_entry(argv: list[str]) -> bool:
    return any(w == ENTRY or w.startswith(ENTRY + " ") for w in argv) or any(
        w.endswith("verl/trainer/main_ppo.py") for w in argv)


def _from_script(text: str, path: Path, defaults: dict[str, Any],
                 env: dict[str, str]) -> tuple[dict[str, Any], list[str], dict[str, str], list[str]]:
    try:
        script = read_script(text, str(path), environ=env)
    except ShellSyntaxError as exc:
        raise ImportProblem(str(path), f"line {exc.line}", str(exc), "close it as bash would need") from exc
    cmd = script.find(_is_entry)
    if cmd is None:
        raise ImportProblem(str(path), "", f"no `python3 -m {ENTRY}` command found",
                            f"give the script that runs verl's trainer ({ENTRY}), or its Hydra YAML")
    start = next(i for i, w in enumerate(cmd.argv) if w == ENTRY or w.endswith("main_ppo.py")) + 1
    notes = _script_notes(script)
    config = defaults
    lines = text.splitlines()
    for word in cmd.argv[start:]:
        if word.startswith("--"):
            notes.append(f"line {cmd.line}: the Hydra flag {word} is not followed: the values come from the "
                         "overrides and verl's default config")
            continue
        config = _apply(config, word, f"line {_line_of(lines, word, cmd.line)}", path)
    env_out = {**script.exported, **cmd.env}
    return config, list(cmd.argv), env_out, notes


def _line_of(lines: list[str], word: str, start: int) -> int:
    """The line (from the command's first) where an override's key is written, for the message."""
    key = word.lstrip("+~").partition("=")[0]
    for number in range(start, len(lines) + 1):
        if key and key in lines[number - 1]:
            return number
    return start


def _script_notes(script: ShellScript) -> list[str]:
    notes = [f"script: {u}" for u in script.unresolved]
    if script.skipped:
        notes.append(f"script: control flow on lines {', '.join(map(str, script.skipped))} was not followed")
    return notes


def _apply(config: dict[str, Any], word: str, where: str, path: Path) -> dict[str, Any]:
    try:
        override = parse_override(word)
    except OverrideError as exc:
        raise ImportProblem(str(path), where, str(exc), exc.hint) from exc
    try:
        apply_override(config, override)
    except KeyError as exc:
        raise _unknown(path, where, override.key, config, override.op) from exc
    except OverrideError as exc:
        raise ImportProblem(str(path), where, str(exc), exc.hint) from exc
    return config


def _unknown(path: Path, where: str, key: str, config: Mapping[str, Any], op: str) -> ImportProblem:
    known = all_keys(config)
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.75)
    if not close:  # the last part alone, for a key in the wrong section
        leaf = key.rsplit(".", 1)[-1]
        close = [k for k in known if k.rsplit(".", 1)[-1] == leaf][:3]
    hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    if op == "delete":
        return ImportProblem(str(path), where, f"~{key} deletes a key verl's config does not have", hint)
    hint = (hint + " " if hint else "") + f"(Hydra refuses a new key without '+': write +{key}=... if verl reads it)"
    return ImportProblem(str(path), where, f"unknown key {key!r}: verl's config has no such key", hint)


def _from_yaml(text: str, path: Path, defaults: dict[str, Any]) -> dict[str, Any]:
    try:
        tree = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        raise ImportProblem(str(path), where, f"not valid YAML: {getattr(exc, 'problem', exc)}",
                            "fix the YAML syntax") from exc
    if not isinstance(tree, dict):
        raise ImportProblem(str(path), "", "a verl config must be a mapping (actor_rollout_ref:, data:, ...)",
                            "give verl's Hydra YAML")
    tree = {k: v for k, v in tree.items() if k not in ("defaults", "hydra")}
    config = defaults
    for dotted, value in _leaves(tree):
        try:
            apply_override(config, Override("set", dotted, value, dotted))
        except KeyError as exc:
            raise _unknown(path, dotted, dotted, config, "set") from exc
        except OverrideError as exc:
            raise ImportProblem(str(path), dotted, str(exc), exc.hint) from exc
    return config


def _leaves(tree: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.extend(_leaves(value, dotted + "."))
        else:
            out.append((dotted, value))
    return out
