"""Shared fixtures: an isolated user directory for every test, and an open store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from magister.store import Store


@pytest.fixture(autouse=True)
def magister_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own MAGISTER_HOME, so no test sees another's database."""
    home = tmp_path / "home"
    monkeypatch.setenv("MAGISTER_HOME", str(home))
    return home


@pytest.fixture
def store(magister_home: Path) -> Iterator[Store]:
    s = Store()
    yield s
    s.close()
