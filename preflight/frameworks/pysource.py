"""Read a framework's configuration classes from its Python source, without importing it.

TRL's GRPOConfig (and the TrainingArguments it extends) are dataclasses, OpenRLHF's
train_ppo_ray.py builds an argparse parser: both state every option's name, type and default in
their source text. Parsing that text (``ast``) gives the installed version's options and defaults
without importing the framework (nor torch, which both import), so the check path stays light.
A default that is not a literal (``default=some_function()``) is kept as ``Expr`` with its text.
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Expr:
    """A default the source computes (not a literal): its text, as written."""

    text: str

    def __str__(self) -> str:
        return f"<{self.text}>"


REQUIRED = Expr("required")  # a dataclass field without a default


@dataclass(frozen=True)
class Option:
    """One option: its default and its type as the source writes it (``int | None``, ``list[str]``...)."""

    default: Any
    annotation: str = ""
    nargs: str | None = None  # argparse: "+", "*", "2", ...
    flag: bool = False  # argparse: store_true / store_false (no value follows)
    choices: tuple[Any, ...] = ()


def package_dir(name: str) -> Path | None:
    """Where an installed top-level package lives, found without importing it (None if absent)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def literal(node: ast.AST | None, names: dict[str, Any] | None = None) -> Any:
    """The value of a default expression when it is a literal (or a name bound to one), else Expr."""
    if node is None:
        return None
    if isinstance(node, ast.Name) and names and node.id in names:
        return names[node.id]
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return Expr(ast.unparse(node))


def _factory(node: ast.AST) -> Any:
    """``default_factory=list`` / ``dict`` / ``lambda: [...]``: the value the factory makes."""
    if isinstance(node, ast.Name) and node.id in ("list", "dict", "set", "tuple"):
        return {"list": [], "dict": {}, "set": [], "tuple": []}[node.id]
    if isinstance(node, ast.Lambda):
        return literal(node.body)
    return Expr(ast.unparse(node))


def _class(tree: ast.Module, name: str) -> ast.ClassDef | None:
    return next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name), None)


def dataclass_options(text: str, class_name: str) -> dict[str, Option] | None:
    """The fields a dataclass declares in its own body (not its bases), in order; None when the
    module has no such class."""
    cls = _class(ast.parse(text), class_name)
    if cls is None:
        return None
    names: dict[str, Any] = {}
    out: dict[str, Option] = {}
    for stmt in cls.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            names[stmt.targets[0].id] = literal(stmt.value, names)  # class-level names defaults refer to
            continue
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
            continue
        name, annotation = stmt.target.id, ast.unparse(stmt.annotation)
        if name.startswith("_") or "ClassVar" in annotation:
            continue
        value = stmt.value
        if isinstance(value, ast.Call) and getattr(value.func, "id", getattr(value.func, "attr", "")) == "field":
            kw = {k.arg: k.value for k in value.keywords if k.arg}
            if "init" in kw and literal(kw["init"]) is False:
                continue
            if "default" in kw:
                default = literal(kw["default"], names)
            elif "default_factory" in kw:
                default = _factory(kw["default_factory"])
            else:
                default = REQUIRED
        elif value is None:
            default = REQUIRED
        else:
            default = literal(value, names)
        out[name] = Option(default, annotation)
    return out


def argparse_options(text: str) -> dict[str, Option]:
    """Every ``*.add_argument("--name", ...)`` call in a module: the destination (dashes made
    underscores, as argparse does) and its default, type, nargs, action and choices."""
    out: dict[str, Option] = {}
    for node in ast.walk(ast.parse(text)):
        if not (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument"):
            continue
        flags = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        long = [f for f in flags if f.startswith("--")]
        if not long:
            continue
        kw = {k.arg: k.value for k in node.keywords if k.arg}
        action = literal(kw.get("action")) if "action" in kw else None
        dest = literal(kw["dest"]) if "dest" in kw else long[0][2:].replace("-", "_")
        flag = action in ("store_true", "store_false")
        if "default" in kw:
            default = literal(kw["default"])
        else:
            default = (action == "store_false") if flag else None
        typ = kw.get("type")
        annotation = ast.unparse(typ) if typ is not None else ("bool" if flag else "str")
        nargs = literal(kw["nargs"]) if "nargs" in kw else None
        choices = literal(kw["choices"]) if "choices" in kw else ()
        out[str(dest)] = Option(default, annotation, None if nargs is None else str(nargs), flag,
                                tuple(choices) if isinstance(choices, (list, tuple)) else ())
    return out
