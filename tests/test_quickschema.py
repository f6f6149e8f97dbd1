"""The quick validity check must agree with jsonschema on every spec, valid or not."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from preflight import quickschema
from preflight.schemas import load_schema
from preflight.spec import resolve

SCHEMA = load_schema("runspec")
FULL = Draft202012Validator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)
BASE = resolve({"run": {"name": "q", "stage": "small"}})
BASE["waivers"] = [{"check": "hw.gpu.vram", "reason": "a long enough reason", "expires": "2030-01-31"}]
BASE["checklist"] = {"severity": {"config.lr.range": "off"},
                     "items": [{"id": "x", "title": "X", "checks": ["hw.*"]}]}


def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += paths(v, prefix + (i,))
    return out


ALL_PATHS = [p for p in paths(BASE) if p]
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12),
    st.sampled_from(["2030-02-30", "2030-01-31", "20300131", "off", "warn", "small", "dense", "", "a b"]),
)
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)), max_leaves=6)


def set_path(doc: dict, path: tuple, value: Any) -> dict:
    doc = copy.deepcopy(doc)
    node = doc
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return doc


@pytest.mark.slow
@settings(max_examples=1500, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(ALL_PATHS), json_values), min_size=1, max_size=3))
def test_quick_check_agrees_with_jsonschema(edits):
    doc = BASE
    for path, value in edits:
        try:
            doc = set_path(doc, path, value)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit replaced the container of this path
    assert quickschema.is_valid(doc, SCHEMA) == FULL.is_valid(doc)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([p for p in ALL_PATHS if len(p) <= 2]), st.text(max_size=8))
def test_unknown_keys_are_invalid_in_both(path, key):
    doc = copy.deepcopy(BASE)
    node = doc
    for part in path:
        node = node[part]
    if not isinstance(node, dict):
        return
    node["zz_" + key] = 1
    assert quickschema.is_valid(doc, SCHEMA) == FULL.is_valid(doc)


def test_the_base_spec_is_valid_in_both():
    assert quickschema.is_valid(BASE, SCHEMA) and FULL.is_valid(BASE)


@pytest.mark.parametrize("value,ok", [(16, True), (16.0, True), (16.5, False), (True, False), ("16", False)])
def test_integer_semantics_follow_json_schema(value, ok):
    assert quickschema.is_valid(value, {"type": "integer"}) is ok


def test_unknown_keywords_defer_to_jsonschema():
    with pytest.raises(quickschema.Unsupported):
        quickschema.is_valid({}, {"oneOf": [{"type": "object"}]})
