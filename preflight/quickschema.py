"""A fast yes/no JSON Schema check for the keywords the run spec uses.

Importing jsonschema costs about 80 ms, a third of a whole `preflight check`. Almost every spec a
check sees is valid, so this module answers "valid?" for the subset of draft 2020-12 that
schemas/runspec.schema.json uses, and the loader imports jsonschema only when the answer is no
(for its precise messages) or when the schema uses a keyword this module does not know.
A property test holds the two to the same verdict.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from functools import cache
from typing import Any

ANNOTATIONS = {"$schema", "$id", "title", "description", "default", "examples", "$comment"}
KNOWN = ANNOTATIONS | {
    "type", "properties", "additionalProperties", "required", "enum", "const", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "items", "minItems", "maxItems", "uniqueItems", "pattern",
    "propertyNames", "minLength", "maxLength", "format",
}


class Unsupported(Exception):
    """The schema uses a keyword this module does not evaluate: ask jsonschema instead."""


def is_valid(instance: Any, schema: dict[str, Any] | bool) -> bool:
    """True when ``instance`` is valid; raises Unsupported when this module cannot tell."""
    if schema is True:
        return True
    if schema is False:
        return False
    assert isinstance(schema, dict)
    unknown = set(schema) - KNOWN
    if unknown:
        raise Unsupported(", ".join(sorted(unknown)))
    if "type" in schema and not _type_ok(instance, schema["type"]):
        return False
    if "enum" in schema and not any(_equal(instance, e) for e in schema["enum"]):
        return False
    if "const" in schema and not _equal(instance, schema["const"]):
        return False
    if _is_number(instance) and not _number_ok(instance, schema):
        return False
    if isinstance(instance, str) and not _string_ok(instance, schema):
        return False
    if isinstance(instance, list) and not _array_ok(instance, schema):
        return False
    return not (isinstance(instance, dict) and not _object_ok(instance, schema))


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _type_ok(x: Any, types: str | list[str]) -> bool:
    for t in [types] if isinstance(types, str) else types:
        if (
            (t == "object" and isinstance(x, dict))
            or (t == "array" and isinstance(x, list))
            or (t == "string" and isinstance(x, str))
            or (t == "boolean" and isinstance(x, bool))
            or (t == "null" and x is None)
            or (t == "number" and _is_number(x))
            or (t == "integer" and _is_number(x) and (isinstance(x, int) or (math.isfinite(x) and x == int(x))))
        ):
            return True
    return False


def _equal(a: Any, b: Any) -> bool:
    # JSON equality: True is not 1, and 1 == 1.0.
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    return type(a) is type(b) and bool(a == b)


def _number_ok(x: float, s: dict[str, Any]) -> bool:
    return not (
        ("minimum" in s and x < s["minimum"])
        or ("maximum" in s and x > s["maximum"])
        or ("exclusiveMinimum" in s and x <= s["exclusiveMinimum"])
        or ("exclusiveMaximum" in s and x >= s["exclusiveMaximum"])
    )


@cache
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _string_ok(x: str, s: dict[str, Any]) -> bool:
    length = len(x)
    if ("minLength" in s and length < s["minLength"]) or ("maxLength" in s and length > s["maxLength"]):
        return False
    if "pattern" in s and not _regex(s["pattern"]).search(x):
        return False
    if s.get("format") == "date":
        try:
            dt.date.fromisoformat(x)
        except ValueError:
            return False
        return bool(re.fullmatch(r"\d{4}-\d{2}-\d{2}", x))
    return True


def _array_ok(x: list[Any], s: dict[str, Any]) -> bool:
    if ("minItems" in s and len(x) < s["minItems"]) or ("maxItems" in s and len(x) > s["maxItems"]):
        return False
    if s.get("uniqueItems") and any(_equal(a, b) for i, a in enumerate(x) for b in x[i + 1:]):
        return False
    return not ("items" in s and not all(is_valid(item, s["items"]) for item in x))


def _object_ok(x: dict[str, Any], s: dict[str, Any]) -> bool:
    if any(key not in x for key in s.get("required", [])):
        return False
    props = s.get("properties", {})
    extra = s.get("additionalProperties", True)
    names = s.get("propertyNames", True)
    for key, value in x.items():
        if names is not True and not is_valid(key, names):
            return False
        sub = props.get(key, extra)
        if not is_valid(value, sub):
            return False
    return True
