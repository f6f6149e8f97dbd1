"""`preflight import FRAMEWORK SOURCE`: a framework's configuration read by its importer
(preflight.frameworks.<name>) and written as a run spec, with the importer's notes as comments.

The spec is written with a stable key order (the run-spec schema's section order, the framework's
config as resolved), so importing the same source twice gives the same file, and it validates:
the written text is loaded back through the schema before it is written.
"""

from __future__ import annotations

import importlib
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import UsageError
from ..frameworks.base import ImportedRun
from ..schemas import load_schema, validation_errors
from ..yamlio import dump_yaml, load_yaml

FRAMEWORKS = ("verl", "trl", "openrlhf")


def importer(framework: str) -> ModuleType:
    """The framework's importer module, or a UsageError that says which exist."""
    if framework not in FRAMEWORKS:
        raise UsageError(f"unknown framework {framework!r}: preflight imports {', '.join(FRAMEWORKS)}")
    try:
        return importlib.import_module(f"preflight.frameworks.{framework}")
    except ModuleNotFoundError as exc:
        if exc.name != f"preflight.frameworks.{framework}":
            raise
        raise UsageError(f"this rl-preflight has no importer for {framework} (preflight/frameworks/{framework}.py "
                         "is missing): update rl-preflight") from None


def import_run(framework: str, source: str | Path, version: str | None = None) -> ImportedRun:
    """Read ``source`` with the framework's importer; an ImportProblem (exit 2) for bad input."""
    module = importer(framework)
    path = Path(source)
    if not path.is_file():
        raise UsageError(f"{path}: no such file (give the {framework} launch script or configuration file)")
    imported: ImportedRun = module.import_source(path, version=version)
    return imported


def ordered(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec's sections in the schema's order (run:, model:, ... trainer:), keys within as given."""
    order = list(load_schema("runspec")["properties"])
    return {k: spec[k] for k in sorted(spec, key=lambda k: order.index(k) if k in order else len(order))}


def spec_text(imported: ImportedRun, framework: str, source: str | Path) -> str:
    """The spec file: a header naming the source, the importer's notes as comments, then YAML."""
    spec = ordered(imported.spec)
    errors = list(validation_errors(spec, "runspec"))
    if errors:  # the importer's own mistake, not the user's: say where
        where = "/".join(str(p) for p in errors[0].absolute_path)
        raise UsageError(f"the spec imported from {source} does not validate at {where or 'the top'}: "
                         f"{errors[0].message} (a bug in the {framework} importer; please report it)")
    lines = [f"{HEADER} {framework} {source}`: the common fields below say what",
             f"# the {framework} configuration does in run-spec terms; trainer.config is its full resolved",
             "# configuration and trainer.command what `preflight launch` runs once the gate passes."]
    if imported.notes:
        lines.append("#")
        lines.append("# Notes from the import:")
        for note in imported.notes:
            wrapped = textwrap.wrap(note, width=96, initial_indent="# - ", subsequent_indent="#   ",
                                    break_long_words=False, break_on_hyphens=False)
            lines.extend(wrapped or ["# -"])
    body = dump_yaml(spec)
    if load_yaml(body, str(source))[0] != spec:  # what check will read must be what was imported
        raise UsageError(f"the spec imported from {source} does not read back as written (a bug in the YAML "
                         "writer; please report it)")
    return "\n".join(lines) + "\n" + body


HEADER = "# Imported by `preflight import"


def write_spec(text: str, output: str | Path | None, force: bool = False) -> Path | None:
    """Write the spec to ``output`` (None: the caller prints it). An earlier import there is
    replaced; any other existing file only with ``force`` (it may be a spec someone edited)."""
    if output is None:
        return None
    path = Path(output)
    if path.is_file() and not force:
        try:
            first = path.read_text(encoding="utf-8", errors="replace")[:len(HEADER)]
        except OSError:
            first = ""
        if first != HEADER:
            raise UsageError(f"{path} exists and was not written by `preflight import`; pass --force to "
                             "overwrite it, or choose another -o")
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path
