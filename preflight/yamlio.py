"""Safe YAML loading for run specs: duplicate keys rejected, every value's line remembered.

PyYAML's safe loader silently keeps the last of two equal keys and reads ``1e-6`` as a string
(YAML 1.1 wants a dot). Both are traps for a learning rate, so this loader fixes them, and it keeps
a map from JSON path to line so that schema errors can point at the line to edit.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from .errors import InputFileError, SpecError, SpecProblem

Path_ = tuple[str | int, ...]


def json_path(parts: tuple[Any, ...] | list[Any]) -> str:
    """A path into a document as problems name it: ``$.training.batch_size``, ``$.waivers[0]``."""
    out = "$"
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


# YAML 1.2's float syntax: accepts 1e-6, 3E+2 and .5, which YAML 1.1 leaves as strings.
_FLOAT_RE = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class _SpecLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 floats, dates kept as strings, and duplicate keys rejected."""


# Drop the implicit timestamp, float and bool resolvers, then add YAML 1.2's: dates stay ISO
# strings (JSON Schema's "format: date" wants one), 1e-6 is a float, and `off` stays the string
# "off" instead of YAML 1.1's False.
_REPLACED = ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool")
_SpecLoader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag not in _REPLACED]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_SpecLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_RE, list("-+0123456789."))
_SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def _construct_mapping(loader: _SpecLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        line = key_node.start_mark.line + 1
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<: *anchor` merges are allowed
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            # JSON (and so the schema) only has string keys; `1:` or `~:` or `[a, b]:` is a slip.
            raise _BadKey(f"keys must be text, found {type(key).__name__} {key!r}", line,
                          "quote the key, e.g. '1': or 'null':")
        if key in seen:
            raise _BadKey(f"duplicate key '{key}' (first defined on line {seen[key]})", line,
                          "keep one of the two; YAML would silently use the last", rule="duplicate-key")
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


class _BadKey(Exception):
    def __init__(self, message: str, line: int, hint: str, rule: str = "key-type") -> None:
        super().__init__(message)
        self.message, self.line, self.hint, self.rule = message, line, hint, rule


_SpecLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)


class _SpecDumper(yaml.SafeDumper):
    """SafeDumper whose strings read back as strings under the spec loader's YAML 1.2 rules: a
    string such as "5e-07" or "0.001" (a number under YAML 1.2, which PyYAML's 1.1 rules leave
    unquoted) is written quoted."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    plain_tag = _SpecLoader.resolve(_SpecLoader, yaml.ScalarNode, value, (True, False))  # type: ignore[arg-type]
    style = "'" if plain_tag != "tag:yaml.org,2002:str" else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_SpecDumper.add_representer(str, _represent_str)


def dump_yaml(data: Any) -> str:
    """A spec (plain data) as YAML that ``load_yaml`` reads back to the same data: keys in their
    order, block style, strings that look like numbers or booleans quoted."""
    return yaml.dump(data, Dumper=_SpecDumper, sort_keys=False, allow_unicode=True, width=120,
                     default_flow_style=False)


def line_map(node: yaml.Node | None, prefix: Path_ = ()) -> dict[Path_, int]:
    """Map each JSON path in a composed YAML document to its 1-based line."""
    lines: dict[Path_, int] = {}
    if node is None:
        return lines
    lines[prefix] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = prefix + (str(key_node.value),)
            lines.update(line_map(value_node, path))
            lines[path] = key_node.start_mark.line + 1  # the key's line reads best in a message
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines.update(line_map(item, prefix + (i,)))
    return lines


def read_text(path: Path, what: str = "run spec") -> str:
    """Read a text file or raise an InputFileError that says exactly what is wrong with it."""
    shown = str(path)
    if not path.exists():
        hint = "check the path" + (", or create one with `preflight init`" if what == "run spec" else "")
        raise InputFileError(shown, "no such file", hint)
    if path.is_dir():
        raise InputFileError(shown, "is a directory, not a file", f"pass the {what} file inside it")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputFileError(shown, f"cannot be read: {exc.strerror or exc}", "check its permissions") from None
    if b"\x00" in raw:
        raise InputFileError(shown, "looks like a binary file (it contains NUL bytes)", f"pass a YAML {what}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputFileError(
            shown, f"is not valid UTF-8 text (byte {exc.start})", f"save the {what} as UTF-8"
        ) from None
    if not text.strip():
        raise InputFileError(shown, "is empty", f"write a {what} into it, e.g. `preflight init > {path.name}`")
    return text


def load_yaml(text: str, file: str) -> tuple[Any, dict[Path_, int]]:
    """Parse YAML safely; return the data and its path-to-line map, or raise SpecError."""
    loader: _SpecLoader | None = None
    try:
        loader = _SpecLoader(text)  # the reader rejects control characters right here
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except _BadKey as bad:
        raise SpecError(file, [SpecProblem(bad.message, line=bad.line, rule=bad.rule, hint=bad.hint)]) from None
    except yaml.reader.ReaderError as exc:
        raise SpecError(file, [SpecProblem(
            f"character {exc.character!r} is not allowed in YAML", line=text.count("\n", 0, exc.position) + 1,
            rule="yaml-syntax",
            hint="remove control characters (a pasted terminal colour code?) from that line")]) from None
    except RecursionError:
        raise SpecError(file, [SpecProblem("nesting is too deep to be a run spec", line=_deep_line(text),
                                           rule="yaml-syntax", hint="look for runaway brackets")]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = exc.problem or exc.context or "cannot parse"
        raise SpecError(
            file, [SpecProblem(f"YAML syntax error: {what}", line=mark.line + 1 if mark else None, rule="yaml-syntax",
                               hint="check indentation, colons and quotes on that line")]
        ) from None
    except yaml.YAMLError as exc:
        raise SpecError(file, [SpecProblem(f"YAML error: {exc}", rule="yaml-syntax")]) from None
    finally:
        if loader is not None:
            loader.dispose()
    lines = line_map(node)
    data, problems = _clean_values(data, (), lines)
    if problems:
        raise SpecError(file, problems)
    return data, lines


def _deep_line(text: str, limit: int = 100) -> int:
    """The line where flow brackets first nest deeper than any run spec needs."""
    depth = 0
    for i, ch in enumerate(text):
        depth += 1 if ch in "[{" else -1 if ch in "]}" else 0
        if depth > limit:
            return text.count("\n", 0, i) + 1
    return 1


def _clean_values(value: Any, path: Path_, lines: dict[Path_, int]) -> tuple[Any, list[SpecProblem]]:
    """Join UTF-16 surrogate pairs that YAML escapes leave split, and reject what JSON cannot hold:
    lone surrogates and non-finite numbers (.nan and .inf would pass every range check)."""
    def where() -> int | None:
        p = path
        while p and p not in lines:
            p = p[:-1]
        return lines.get(p)

    if isinstance(value, dict):
        out, problems = {}, []
        for k, v in value.items():
            out[k], more = _clean_values(v, path + (k,), lines)
            problems += more
        return out, problems
    if isinstance(value, list):
        items, problems = [], []
        for i, v in enumerate(value):
            item, more = _clean_values(v, path + (i,), lines)
            items.append(item)
            problems += more
        return items, problems
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return value, [SpecProblem(f"{value} is not a usable number", json_path(path), where(), "finite-number",
                                   "write a finite number")]
    if isinstance(value, str) and any("\ud800" <= ch <= "\udfff" for ch in value):
        try:
            return value.encode("utf-16", "surrogatepass").decode("utf-16"), []
        except UnicodeDecodeError:
            return value, [SpecProblem("text holds a lone UTF-16 surrogate escape (\\uD800-\\uDFFF)",
                                       json_path(path), where(), "unicode", "write the character itself, or a valid pair")]
    return value, []
