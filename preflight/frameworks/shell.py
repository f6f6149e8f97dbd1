"""Reading the bash launch scripts the frameworks' examples are written as, without running them.

verl's and OpenRLHF's published examples are shell scripts: variables set and exported, values in
single or double quotes, ``${VAR:-default}``, line continuations, ``$@`` passing the script's own
arguments on, and one long command (``python3 -m verl.trainer.main_ppo key=value ...``, or
``ray job submit ... -- python3 -m openrlhf.cli.train_ppo_ray --flag value ...``). This module
reads such a script the way bash would for those constructs (quotes, expansion, word splitting,
command separators) and returns the commands with their argument lists and line numbers.

What it cannot know without running the script (command substitution ``$(...)``, variables that
are neither set in the script nor given) is kept as written and listed in ``unresolved``, so the
importer can say so instead of guessing. Control flow (``if``, ``for``, functions) is not followed:
its lines are reported as skipped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASSIGNMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", re.S)
_SEPARATORS = (";", "&&", "||", "|", "&")
_KEYWORDS = {"if", "then", "else", "elif", "fi", "for", "while", "until", "do", "done", "case", "esac",
             "function", "{", "}", "[[", "[", "select"}
_ARGS = "\x00args\x00"  # where "$@" stood: each of the script's arguments becomes its own word


@dataclass
class ShellCommand:
    """One simple command of the script: its words after expansion and where it starts."""

    argv: list[str]
    line: int  # 1-based line of the script where the command starts
    env: dict[str, str] = field(default_factory=dict)  # VAR=value words before the command


@dataclass
class ShellScript:
    """A script read without running it: its commands, its variables, and what stayed unknown."""

    path: str
    commands: list[ShellCommand]
    variables: dict[str, str]
    exported: dict[str, str]  # the variables the script exports (the launched command sees them)
    unresolved: list[str] = field(default_factory=list)  # '$(...)' or '$VAR' left as written, with lines
    skipped: list[int] = field(default_factory=list)  # lines of control flow that were not followed

    def find(self, matches: Callable[[list[str]], bool]) -> ShellCommand | None:
        """The last command whose argument list ``matches`` (a script may run a setup step first)."""
        found = [c for c in self.commands if matches(c.argv)]
        return found[-1] if found else None


class ShellSyntaxError(ValueError):
    """A quote or substitution that never closes; carries the 1-based line where it opened."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


def read_script(text: str, path: str = "<script>", environ: Mapping[str, str] | None = None,
                args: list[str] | None = None) -> ShellScript:
    """Read a launch script. ``environ`` answers variables the script uses without setting them
    (pass ``os.environ`` to resolve ``$HOME`` as the shell would); ``args`` are the script's own
    arguments, which ``$@`` / ``$*`` / ``$1``... stand for."""
    reader = _Reader(path, dict(environ or {}), list(args or []))
    reader.run(text)
    return ShellScript(path=path, commands=reader.commands, variables=reader.variables,
                       exported=reader.exported, unresolved=reader.unresolved, skipped=reader.skipped)


@dataclass
class _Word:
    text: str = ""
    quoted: bool = False  # any part was quoted: an empty quoted word is still a word
    started: bool = False


class _Reader:
    def __init__(self, path: str, environ: dict[str, str], args: list[str]) -> None:
        self.path, self.environ, self.args = path, environ, args
        self.variables: dict[str, str] = {}
        self.exported: dict[str, str] = {}
        self.commands: list[ShellCommand] = []
        self.unresolved: list[str] = []
        self.skipped: list[int] = []

    # --- scanning -------------------------------------------------------------------------
    def run(self, text: str) -> None:
        i, line, n = 0, 1, len(text)
        words: list[str | tuple[str]] = []  # a 1-tuple marks a separator
        word, word_line, start_line = _Word(), 1, 1
        while i < n:
            ch = text[i]
            if ch == "\\" and i + 1 < n and text[i + 1] == "\n":  # line continuation
                i, line = i + 2, line + 1
                continue
            if ch in " \t":
                self._end_word(words, word)
                word, i = _Word(), i + 1
                continue
            if ch == "\n" or (ch == "#" and not word.started):
                if ch == "#":
                    while i < n and text[i] != "\n":
                        i += 1
                    continue
                self._end_word(words, word)
                self._statement(words, start_line)
                words, word, i, line = [], _Word(), i + 1, line + 1
                start_line = line
                continue
            sep = next((s for s in sorted(_SEPARATORS, key=len, reverse=True) if text.startswith(s, i)), None)
            if sep is not None:  # run what came before, so that `A=1; echo $A` sees A
                self._end_word(words, word)
                self._statement(words, start_line)
                words, word, i = [], _Word(), i + len(sep)
                continue
            if not word.started:
                word_line = line
            word.started = True
            if ch == "'":
                end = text.find("'", i + 1)
                if end < 0:
                    raise ShellSyntaxError(word_line, "a single quote that never closes")
                word.text += text[i + 1:end]
                word.quoted = True
                line += text.count("\n", i, end)
                i = end + 1
            elif ch == '"':
                i, line = self._double_quoted(text, i + 1, line, word)
            elif ch == "\\" and i + 1 < n:
                word.text += text[i + 1]
                i += 2
            elif ch == "$":
                value, i = self._dollar(text, i, line)
                word.text += value
            else:
                word.text += ch
                i += 1
        self._end_word(words, word)
        self._statement(words, start_line)

    def _double_quoted(self, text: str, i: int, line: int, word: _Word) -> tuple[int, int]:
        opened, n = line, len(text)
        word.quoted = True
        while i < n and text[i] != '"':
            ch = text[i]
            if ch == "\\" and i + 1 < n and text[i + 1] in '"\\$`\n':
                if text[i + 1] != "\n":
                    word.text += text[i + 1]
                else:
                    line += 1
                i += 2
            elif ch == "$":
                value, i = self._dollar(text, i, line)
                word.text += value
            else:
                line += ch == "\n"
                word.text += ch
                i += 1
        if i >= n:
            raise ShellSyntaxError(opened, "a double quote that never closes")
        return i + 1, line

    def _dollar(self, text: str, i: int, line: int) -> tuple[str, int]:
        """Expand what follows ``$`` at ``text[i]``; returns the value and the index after it."""
        nxt = text[i + 1] if i + 1 < len(text) else ""
        if nxt == "(":
            end = _matching(text, i + 1, "(", ")")
            if end < 0:
                raise ShellSyntaxError(line, "a $( that never closes")
            literal = text[i:end + 1]
            arithmetic = _arithmetic(literal, self._lookup_plain)
            if arithmetic is not None:
                return arithmetic, end + 1
            self.unresolved.append(f"line {line}: {literal} (command substitution is not run)")
            return literal, end + 1
        if nxt == "{":
            end = _matching(text, i + 1, "{", "}")
            if end < 0:
                raise ShellSyntaxError(line, "a ${ that never closes")
            return self._braced(text[i + 2:end], line), end + 1
        if nxt in "@*":
            return _ARGS, i + 2
        if nxt.isdigit():
            k = int(nxt)
            return (self.args[k - 1] if 0 < k <= len(self.args) else ""), i + 2
        m = _NAME.match(text, i + 1)
        if not m:
            return "$", i + 1
        return self._lookup(m.group(0), line), m.end()

    def _braced(self, inner: str, line: int) -> str:
        m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-=+?])(.*))?", inner, re.S)
        if not m:
            self.unresolved.append(f"line {line}: ${{{inner}}} (this expansion is not supported)")
            return "${" + inner + "}"
        name, op, operand = m.group(1), m.group(2), self._expand(m.group(3) or "", line)
        value = self._known(name)
        if op is None:
            return value if value is not None else self._lookup(name, line)
        empty_counts = op.startswith(":")
        is_set = value is not None and (value != "" or not empty_counts)
        if op.endswith("+"):
            return operand if is_set else ""
        if is_set:
            return value or ""
        if op.endswith("="):
            self.variables[name] = operand
        return operand

    def _expand(self, word: str, line: int) -> str:
        """The word of ``${VAR:-word}`` as bash expands it: quotes removed, ``$`` expansions inside
        (``${TRAIN:-"$HOME/x"}``, ``${A:-${B}}``)."""
        out, i, n = _Word(), 0, len(word)
        while i < n:
            ch = word[i]
            if ch == "'":
                end = word.find("'", i + 1)
                end = n if end < 0 else end
                out.text += word[i + 1:end]
                i = end + 1
            elif ch == '"':
                try:
                    i, _ = self._double_quoted(word, i + 1, line, out)
                except ShellSyntaxError:
                    out.text += word[i + 1:]
                    i = n
            elif ch == "\\" and i + 1 < n:
                out.text += word[i + 1]
                i += 2
            elif ch == "$":
                value, i = self._dollar(word, i, line)
                out.text += value
            else:
                out.text += ch
                i += 1
        return out.text

    def _known(self, name: str) -> str | None:
        if name in self.variables:
            return self.variables[name]
        return self.environ.get(name)

    def _lookup(self, name: str, line: int) -> str:
        value = self._known(name)
        if value is None:
            self.unresolved.append(f"line {line}: ${name} (not set in the script or the environment given)")
            return "$" + name
        return value

    def _lookup_plain(self, name: str) -> str | None:
        return self._known(name)

    def _end_word(self, words: list[str | tuple[str]], word: _Word) -> None:
        if word.text == _ARGS:  # "$@" alone: one word per argument, none when there are none
            words.extend(self.args)
        elif word.started or word.quoted:
            words.append(word.text.replace(_ARGS, " ".join(self.args)))

    # --- statements -----------------------------------------------------------------------
    def _statement(self, words: list[str | tuple[str]], line: int) -> None:
        current: list[str] = []
        for w in words + [(";",)]:
            if isinstance(w, tuple):
                if current:
                    self._simple(current, line)
                current = []
            else:
                current.append(w)

    def _simple(self, words: list[str], line: int) -> None:
        env: dict[str, str] = {}
        while words and _ASSIGNMENT.fullmatch(words[0]):
            name, value = _ASSIGNMENT.fullmatch(words[0]).groups()  # type: ignore[union-attr]
            env[name] = value
            words = words[1:]
        if not words:  # NAME=value alone: a shell variable
            self.variables.update(env)
            return
        head = words[0]
        if head in ("export", "declare", "local", "readonly"):
            for w in words[1:]:
                m = _ASSIGNMENT.fullmatch(w)
                if m:
                    self.variables[m.group(1)] = m.group(2)
                    self.exported[m.group(1)] = m.group(2)
                elif _NAME.fullmatch(w) and w in self.variables:
                    self.exported[w] = self.variables[w]
            return
        if head == "unset":
            for w in words[1:]:
                self.variables.pop(w, None)
                self.exported.pop(w, None)
            return
        if head in _KEYWORDS:
            if line not in self.skipped:
                self.skipped.append(line)
            return
        self.commands.append(ShellCommand(argv=words, line=line, env=env))


def _matching(text: str, start: int, opening: str, closing: str) -> int:
    """Index of the bracket closing the one at ``start`` (quotes inside respected), or -1."""
    depth, i, quote = 0, start, ""
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == opening:
            depth += 1
        elif ch == closing:
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _arithmetic(literal: str, lookup: Callable[[str], str | None]) -> str | None:
    """``$((a * b))`` over integers and known variables; None when it is anything else."""
    m = re.fullmatch(r"\$\(\((.*)\)\)", literal, re.S)
    if not m:
        return None
    expr = m.group(1)

    def value(name_match: re.Match[str]) -> str:
        known = lookup(name_match.group(0).lstrip("$"))
        if known is None or not re.fullmatch(r"-?\d+", known.strip()):
            raise ValueError(name_match.group(0))
        return known.strip()

    try:
        expr = re.sub(r"\$?[A-Za-z_][A-Za-z0-9_]*", value, expr)
    except ValueError:
        return None
    if not re.fullmatch(r"[\d\s+\-*/%()]+", expr):
        return None
    try:
        return str(int(eval(expr.replace("/", "//"), {"__builtins__": {}}, {})))  # noqa: S307 - digits and operators only
    except (SyntaxError, ZeroDivisionError, ValueError):
        return None
