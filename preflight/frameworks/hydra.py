"""Hydra's command-line overrides and OmegaConf's interpolations, read without Hydra or OmegaConf.

verl is configured with Hydra: a YAML tree of defaults, changed on the command line by overrides
(``key=value`` for a key the tree has, ``+key=value`` to add one, ``++key=value`` to add or
change, ``~key`` to delete), whose values Hydra parses as YAML-like literals (``null``, ``True``,
``1e-6``, ``['a','b']``, ``{k: v}``, quoted strings). Values may refer to others with OmegaConf
interpolations (``${trainer.project_name}``, ``${oc.select:path,default}``, ``${.sibling}``,
``${oc.env:VAR,default}``). This module applies overrides to a plain dict tree and resolves the
interpolations, so the importer can read the configuration verl would see without importing
either library (the check path stays light).
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_INT = re.compile(r"[+-]?\d[\d_]*")
_FLOAT = re.compile(r"[+-]?(\d[\d_]*\.?[\d_]*|\.\d[\d_]*)([eE][+-]?\d+)?")
_KEY = re.compile(r"[A-Za-z_][\w\-]*(\.[A-Za-z_0-9][\w\-]*)*")
_RESOLVER = re.compile(r"([A-Za-z_][\w.]*):(.*)", re.S)


class OverrideError(ValueError):
    """An override Hydra would refuse; ``hint`` says what to write instead."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True)
class Override:
    op: str  # "set" (key=value), "add" (+key=value), "force" (++key=value), "delete" (~key)
    key: str
    value: Any = None
    text: str = ""  # as written


def parse_override(text: str) -> Override:
    """One command-line word ``[+|++|~]key[=value]``."""
    op, rest = "set", text
    if rest.startswith("++"):
        op, rest = "force", rest[2:]
    elif rest.startswith("+"):
        op, rest = "add", rest[1:]
    elif rest.startswith("~"):
        op, rest = "delete", rest[1:]
    key, eq, raw = rest.partition("=")
    if not _KEY.fullmatch(key):
        raise OverrideError(f"{text!r} is not a Hydra override (key=value)",
                            "write each setting as dotted.key=value")
    if not eq and op != "delete":
        raise OverrideError(f"{text!r} has no '=' and no value", f"write {key}=VALUE (or ~{key} to delete it)")
    return Override(op, key, parse_value(raw) if eq else None, text)


def parse_value(raw: str) -> Any:
    """A Hydra override value: null, booleans, numbers, quoted strings, [lists] and {dicts};
    anything else is the string as written (spaces at the ends removed)."""
    value, end = _Parser(raw).value(0, top=True)
    return value


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text

    def value(self, i: int, top: bool = False) -> tuple[Any, int]:
        t = self.text
        i = self._skip(i)
        if i < len(t) and t[i] == "[":
            return self._sequence(i + 1, "]")
        if i < len(t) and t[i] == "{":
            return self._mapping(i + 1)
        if i < len(t) and t[i] in "'\"":
            end = t.find(t[i], i + 1)
            if end < 0:
                raise OverrideError(f"a quote that never closes in {t!r}", "close the quote")
            return t[i + 1:end], end + 1
        stops = "" if top else ",]}"
        j, depth = i, 0
        while j < len(t) and (depth or t[j] not in stops):
            if t.startswith("${", j):
                depth += 1
                j += 2
                continue
            if t[j] == "}" and depth:
                depth -= 1
            j += 1
        return scalar(t[i:j].strip()), j

    def _skip(self, i: int) -> int:
        while i < len(self.text) and self.text[i] in " \t":
            i += 1
        return i

    def _sequence(self, i: int, close: str) -> tuple[list[Any], int]:
        out: list[Any] = []
        i = self._skip(i)
        if i < len(self.text) and self.text[i] == close:
            return out, i + 1
        while i < len(self.text):
            item, i = self.value(i)
            out.append(item)
            i = self._skip(i)
            if i < len(self.text) and self.text[i] == ",":
                i += 1
                continue
            if i < len(self.text) and self.text[i] == close:
                return out, i + 1
            break
        raise OverrideError(f"a list that never closes in {self.text!r}", "close it with ]")

    def _mapping(self, i: int) -> tuple[dict[str, Any], int]:
        out: dict[str, Any] = {}
        i = self._skip(i)
        if i < len(self.text) and self.text[i] == "}":
            return out, i + 1
        while i < len(self.text):
            colon = self.text.find(":", i)
            if colon < 0:
                break
            key = self.text[i:colon].strip().strip("'\"")
            item, i = self.value(colon + 1)
            out[key] = item
            i = self._skip(i)
            if i < len(self.text) and self.text[i] == ",":
                i = self._skip(i + 1)
                continue
            if i < len(self.text) and self.text[i] == "}":
                return out, i + 1
            break
        raise OverrideError(f"a mapping that never closes in {self.text!r}", "close it with }")


def scalar(word: str) -> Any:
    """An unquoted Hydra value: null, a boolean (any case), an int, a float, or the string."""
    low = word.lower()
    if low == "null" or word == "~":
        return None
    if low in ("true", "false"):
        return low == "true"
    if _INT.fullmatch(word):
        return int(word.replace("_", ""))
    if low in ("inf", "+inf", "-inf", "nan"):
        return float(low.replace("+", ""))
    if _FLOAT.fullmatch(word) and any(c.isdigit() for c in word):
        number = float(word.replace("_", ""))
        return number if not math.isnan(number) else word
    return word


# --- applying overrides ----------------------------------------------------------------------------


_MISSING = object()


def lookup(tree: Mapping[str, Any], dotted: str, default: Any = _MISSING) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            if default is _MISSING:
                raise KeyError(dotted)
            return default
        node = node[part]
    return node


def apply_override(tree: dict[str, Any], o: Override) -> None:
    """Change ``tree`` as Hydra would for one override, or raise OverrideError as Hydra refuses."""
    *parents, last = o.key.split(".")
    node: Any = tree
    for depth, part in enumerate(parents):
        if not isinstance(node, dict):
            raise OverrideError(f"{'.'.join(parents[:depth])} is a value, not a section: {o.text!r} cannot set "
                                f"a key inside it")
        if part not in node:
            if o.op in ("add", "force"):
                node[part] = {}
            else:
                raise KeyError(o.key)
        node = node[part]
    if not isinstance(node, dict):
        raise OverrideError(f"{'.'.join(parents)} is a value, not a section")
    exists = last in node
    if o.op == "delete":
        if not exists:
            raise KeyError(o.key)
        del node[last]
    elif o.op == "set":
        if not exists:
            raise KeyError(o.key)
        node[last] = copy.deepcopy(o.value)
    elif o.op == "add":
        if exists:
            raise OverrideError(f"{o.key} is already in the configuration: +{o.key} adds a new key only",
                                f"write {o.key}=... to change it (or ++{o.key}=...)")
        node[last] = copy.deepcopy(o.value)
    else:
        node[last] = copy.deepcopy(o.value)


def all_keys(tree: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Every dotted key of the tree, sections included."""
    out: list[str] = []
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        out.append(dotted)
        if isinstance(value, Mapping):
            out.extend(all_keys(value, dotted + "."))
    return out


# --- interpolations --------------------------------------------------------------------------------


class Resolver:
    """Resolves ``${...}`` in a tree: absolute and relative paths, ``oc.select``, ``oc.env``.
    What it cannot resolve (another resolver, a missing path without a default) stays as written
    and is listed in ``unresolved``."""

    def __init__(self, tree: dict[str, Any], environ: Mapping[str, str]) -> None:
        self.tree, self.environ = tree, environ
        self.unresolved: list[str] = []
        self._active: set[str] = set()

    def resolve_all(self) -> dict[str, Any]:
        resolved: dict[str, Any] = self._walk(self.tree, ())
        return resolved

    def _walk(self, node: Any, where: tuple[str, ...]) -> Any:
        if isinstance(node, dict):
            return {k: self._walk(v, (*where, str(k))) for k, v in node.items()}
        if isinstance(node, list):
            return [self._walk(v, where) for v in node]
        if isinstance(node, str) and "${" in node:
            return self.value(node, where[:-1], ".".join(where))
        return node

    def value(self, text: str, section: tuple[str, ...], key: str) -> Any:
        """``text`` with its interpolations replaced; a whole-value interpolation keeps its type."""
        parts: list[Any] = []
        i = 0
        while i < len(text):
            start = text.find("${", i)
            if start < 0:
                parts.append(text[i:])
                break
            parts.append(text[i:start])
            end = _closing(text, start + 1)
            if end < 0:
                self.unresolved.append(f"{key}: {text} (an interpolation that never closes)")
                return text
            parts.append(self._interpolation(text[start + 2:end], section, key))
            i = end + 1
        parts = [p for p in parts if not (isinstance(p, str) and p == "")]
        if len(parts) == 1:
            return parts[0]
        return "".join("null" if p is None else str(p) for p in parts)

    def _interpolation(self, inner: str, section: tuple[str, ...], key: str) -> Any:
        m = _RESOLVER.fullmatch(inner)
        if m and not inner.startswith("."):
            name, args = m.group(1), _split_args(m.group(2))
            if name == "oc.select":
                found = self._path(args[0].strip(), section, key, quiet=True)
                if found is not _MISSING:
                    return found
                return self.value(args[1].strip(), section, key) if len(args) > 1 and "${" in args[1] else (
                    parse_value(args[1]) if len(args) > 1 else None)
            if name == "oc.env":
                var = args[0].strip()
                if var in self.environ:
                    return self.environ[var]
                return parse_value(args[1]) if len(args) > 1 else None
            self.unresolved.append(f"{key}: ${{{inner}}} (the resolver {name!r} is not evaluated)")
            return "${" + inner + "}"
        found = self._path(inner.strip(), section, key, quiet=False)
        return "${" + inner + "}" if found is _MISSING else found

    def _path(self, path: str, section: tuple[str, ...], key: str, quiet: bool) -> Any:
        if path.startswith("."):
            ups = len(path) - len(path.lstrip("."))
            base = section[: len(section) - (ups - 1)] if ups > 1 else section
            parts = (*base, *[p for p in path.lstrip(".").split(".") if p])
        else:
            parts = tuple(path.split("."))
        dotted = ".".join(parts)
        raw = lookup(self.tree, dotted, _MISSING) if parts else _MISSING
        if raw is _MISSING:
            if not quiet:
                self.unresolved.append(f"{key}: ${{{path}}} (no such key)")
            return _MISSING
        if dotted in self._active:
            self.unresolved.append(f"{key}: ${{{path}}} (refers to itself)")
            return _MISSING
        self._active.add(dotted)
        try:
            return self._walk(raw, parts)
        finally:
            self._active.discard(dotted)


def _closing(text: str, brace: int) -> int:
    depth = 0
    for i in range(brace, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
    return -1


def _split_args(text: str) -> list[str]:
    """Resolver arguments split at the commas outside brackets and nested interpolations."""
    out, depth, current = [], 0, ""
    for ch in text:
        if ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(current)
            current = ""
        else:
            current += ch
    out.append(current)
    return out
