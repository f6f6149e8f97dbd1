from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def write_spec(tmp_path: Path) -> Callable[[str], Path]:
    """Write a YAML spec into a temp dir and return its path."""

    def write(text: str, name: str = "run.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Relative run/checkpoint dirs in specs land in the test's temp dir, never in the checkout.
    monkeypatch.chdir(tmp_path)
