"""`preflight init`: a commented starter spec, written from the schema and the stage preset.

Generated rather than hand-written, so every default it shows is the one the loader applies. Its
first line points editors (the YAML language server: VS Code's YAML extension, neovim, JetBrains)
at the run-spec schema for completion and checking as you type: a copy written next to the spec
(``write_schema_copy``), or the installed package's own file when the spec goes to stdout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import UsageError
from .schemas import load_schema, schema_path
from .spec import resolve

SCHEMA_FILE = "runspec.schema.json"  # written next to a spec `init -o` writes, for the editor

HEADER = """\
# yaml-language-server: $schema={schema}
# RL Preflight run spec ({stage} stage). Only what differs from the defaults needs to be set:
# every commented line shows the default this stage applies. Check it with
#   preflight validate {file}      (schema and consistency, no probing)
#   preflight check {file}         (this machine against the spec; writes the gate's attestation)
"""

SKIP_SECTIONS = {"$schema", "version", "run", "waivers", "checklist"}


def starter_spec(stage: str = "small", name: str = "my-rl-run", file: str = "run.yaml",
                 schema_ref: str | None = None) -> str:
    """The starter spec's text. ``schema_ref``: what its first line points editors at (the YAML
    language server's ``$schema=`` modeline): a schema file the user has; default the installed
    package's own runspec schema, by absolute path."""
    schema = load_schema("runspec")
    resolved = resolve({"run": {"name": name, "stage": stage}})
    out = [HEADER.format(stage=stage, file=file, schema=schema_ref or schema_path("runspec").as_posix())]
    out.append("run:")
    out.append(f"  name: {name}")
    out.append(f"  stage: {stage}        # small | medium | large | custom")
    out.append(f"  domain: {resolved['run']['domain']}         # math | code | chat")
    for section, sub in schema["properties"].items():
        if section in SKIP_SECTIONS:
            continue
        out.append("")
        out.append(f"# {sub.get('description', '')}")
        out.append(f"# {section}:")
        _emit(out, sub, resolved.get(section, {}), indent=1)
    out.append("")
    out.append("# Failures knowingly accepted; each shows as WAIVED with its reason, never hidden.")
    out.append("# waivers:")
    out.append("#   - check: network.link_speed")
    out.append("#     reason: single rack, measured 25 Gbit/s with nccl-tests")
    out.append("#     expires: 2030-01-31")
    return "\n".join(out) + "\n"


def _emit(out: list[str], schema: dict[str, Any], values: dict[str, Any], indent: int) -> None:
    pad = "#" + "  " * indent
    for key, sub in schema.get("properties", {}).items():
        value = values.get(key) if isinstance(values, dict) else None
        desc = sub.get("description", "")
        if sub.get("type") == "object" and "properties" in sub:
            out.append(f"{pad}{key}:" + (f"   # {desc}" if desc else ""))
            _emit(out, sub, value or {}, indent + 1)
            continue
        shown = json.dumps(value) if value is not None else "~"
        out.append(f"{pad}{key}: {shown}" + (f"   # {desc}" if desc else ""))


def write_schema_copy(spec_path: Path, force: bool = False) -> Path:
    """Write the run-spec schema next to ``spec_path`` (``runspec.schema.json``), for the modeline.
    An identical file is left alone; a different one (another version's) is replaced only with
    ``force``. Raises UsageError naming the file."""
    target = spec_path.parent / SCHEMA_FILE
    text = schema_path("runspec").read_text(encoding="utf-8")
    try:
        if target.exists() and not force and target.read_text(encoding="utf-8") != text:
            raise UsageError(f"{target} exists and is not this version's run-spec schema; pass --force to "
                             "replace it")
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc.strerror or exc}") from None
    return target
