"""The exceptions a user can cause, in one place.

Every error here carries a message meant for a person: it names the file, the place in it (a line
or a JSON path) and, where one exists, the fix. The CLI turns any of them into exit code 2 and a
message on stderr; nothing a user does should ever end in a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class PreflightError(Exception):
    """Base class: something the user can fix. ``str(err)`` is the whole message."""


class UsageError(PreflightError):
    """Bad command-line usage that argparse itself could not catch."""


@dataclass
class SpecProblem:
    """One thing wrong with a run spec, located as precisely as we can."""

    message: str
    path: str = "$"  # JSON path into the spec, e.g. $.training.batch_size
    line: int | None = None  # 1-based line in the YAML file, when known
    rule: str = ""  # the schema keyword or consistency rule that was broken
    hint: str = ""  # what to do about it

    def render(self, file: str) -> str:
        where = f"{file}:{self.line}" if self.line else file
        rule = f" [{self.rule}]" if self.rule else ""
        text = f"{where}: {self.path}: {self.message}{rule}"
        if self.hint:
            text += f"\n    hint: {self.hint}"
        return text


@dataclass
class SpecError(PreflightError):
    """A run spec (or another input file) that cannot be used, with every problem found in it."""

    file: str
    problems: list[SpecProblem] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.__str__())

    def __str__(self) -> str:
        head = f"{self.file}: invalid run spec ({len(self.problems)} problem"
        head += "s)" if len(self.problems) != 1 else ")"
        return "\n".join([head] + ["  " + p.render(self.file) for p in self.problems])


class InputFileError(PreflightError):
    """A file that could not be read at all (missing, a directory, binary, empty)."""

    def __init__(self, file: str, reason: str, hint: str = "") -> None:
        self.file, self.reason, self.hint = file, reason, hint
        text = f"{file}: {reason}"
        if hint:
            text += f"\n    hint: {hint}"
        super().__init__(text)


class UnreadableValue(PreflightError):
    """A value a check needs is in the spec but cannot be used (a word where a number belongs).
    Raised inside a check; the engine reports it as that check's error, naming the field and the
    fix, never as a bug in the check. Never read as a default: guessing could pass what fails."""

    def __init__(self, field: str, value: object, expected: str, fix: str = "") -> None:
        self.field, self.value, self.expected = field, value, expected
        self.fix = fix or f"set {field} to {expected} (or re-import the framework's configuration)"
        super().__init__(f"{field} is {value!r}, not {expected}")
