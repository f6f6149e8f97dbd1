"""Find and load the JSON Schemas that ship with the tool (runspec, checklist, report, event)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import quickschema

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError

NAMES = ("runspec", "checklist", "report", "event")

# In a wheel the schemas live inside the package (see pyproject's force-include); in a source
# checkout or an editable install they are read from the repository's schemas/ folder.
_CANDIDATES = (
    Path(__file__).parent / "_schemas",
    Path(__file__).parent.parent / "schemas",
)


def schema_path(name: str) -> Path:
    for folder in _CANDIDATES:
        path = folder / f"{name}.schema.json"
        if path.is_file():
            return path
    raise FileNotFoundError(f"schema {name!r} is not installed (looked in {', '.join(map(str, _CANDIDATES))})")


@cache
def load_schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(schema_path(name).read_text(encoding="utf-8"))
    return schema


def validation_errors(instance: Any, name: str) -> list[ValidationError]:
    """Every way ``instance`` breaks schema ``name``, sorted by where; [] when it is valid.

    The quick check answers for valid input without importing jsonschema (80 ms of start-up);
    jsonschema runs only to explain what is wrong, or for keywords the quick check lacks.
    """
    schema = load_schema(name)
    try:
        if quickschema.is_valid(instance, schema):
            return []
    except quickschema.Unsupported:
        pass
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    return sorted(validator.iter_errors(instance), key=lambda e: (list(map(str, e.absolute_path)), str(e.validator)))


def schema_defaults(schema: dict[str, Any]) -> dict[str, Any]:
    """Collect the ``default`` annotations of an object schema into a nested dict.

    The schema is the one place defaults are written down; editors show them and the spec loader
    fills them in from here, so the two can never disagree.
    """
    out: dict[str, Any] = {}
    for key, sub in schema.get("properties", {}).items():
        if "default" in sub:
            out[key] = json.loads(json.dumps(sub["default"]))  # a private copy
        elif sub.get("type") == "object" and "properties" in sub:
            section = schema_defaults(sub)
            if section or not sub.get("required"):  # trainer: no defaults, required fields: absent unless written
                out[key] = section
    return out
