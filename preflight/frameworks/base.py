"""What every framework importer returns, and the error it raises for a user's mistake."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import PreflightError


@dataclass
class ImportedRun:
    """A framework configuration read, resolved and mapped into run-spec terms.

    ``spec`` is a run-spec document (plain data, ready to be written as YAML); its ``trainer``
    section holds ``framework``, ``version``, ``defaults``, ``source``, ``command``, ``workdir``,
    ``env``, ``config`` (the framework's full resolved configuration, under the framework's own key
    names) and, for TRL, ``launcher``. ``notes`` are what the importer could not map or had to
    assume, shown to the user and written as comments into the spec.
    """

    spec: dict[str, Any]
    notes: list[str] = field(default_factory=list)


class ImportProblem(PreflightError):
    """A framework configuration that cannot be imported: names the file, the place and the fix."""

    def __init__(self, file: str, where: str, message: str, hint: str = "") -> None:
        self.file, self.where, self.message, self.hint = file, where, message, hint
        text = f"{file}: {where}: {message}" if where else f"{file}: {message}"
        if hint:
            text += f"\n    hint: {hint}"
        super().__init__(text)


def read_source(path: str | Path, what: str) -> tuple[Path, str, str]:
    """The file an importer reads: its path, the path as shown in messages, and its text; an
    ImportProblem naming ``what`` the importer takes when it cannot be read."""
    path = Path(path)
    try:
        return path, str(path), path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ImportProblem(str(path), "", f"cannot be read ({exc})", f"give {what}") from None
