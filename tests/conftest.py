"""Shared fixtures: an isolated user directory for every test, and an open store (SQLite, or PostgreSQL for the
tests marked `@on_both_backends`, from tests/postgres.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from magister.store import Store


@pytest.fixture(autouse=True, scope="session")
def magister_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One MAGISTER_CACHE for the session: derived files (a GGUF's float32 copy) are made once, not per test."""
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MAGISTER_CACHE", str(cache))
        yield cache


@pytest.fixture(autouse=True)
def magister_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own MAGISTER_HOME, so no test sees another's database (nor the user's MAGISTER_STORE)."""
    home = tmp_path / "home"
    monkeypatch.setenv("MAGISTER_HOME", str(home))
    monkeypatch.delenv("MAGISTER_STORE", raising=False)
    return home


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[object]:
    """One throwaway PostgreSQL server for the session, started on first use (skipped when there is none)."""
    from postgres import start_cluster

    cluster = start_cluster()
    yield cluster
    cluster.stop()


@pytest.fixture
def backend() -> str:
    """The store's backend: 'sqlite', unless a test is marked `@on_both_backends` (then also 'postgres')."""
    return "sqlite"


@pytest.fixture
def store_url(backend: str, magister_home: Path, monkeypatch: pytest.MonkeyPatch,
              request: pytest.FixtureRequest) -> str | None:
    """MAGISTER_STORE for this test: unset for SQLite (magister.db in MAGISTER_HOME), an empty store on the
    session's PostgreSQL server otherwise; every `Store()` and command of the test opens it."""
    if backend != "postgres":
        return None
    if getattr(request.function, "sqlite_only", None):
        pytest.skip(f"SQLite only: {request.function.sqlite_only}")
    url = request.getfixturevalue("postgres_cluster").new_store()
    monkeypatch.setenv("MAGISTER_STORE", url)
    return url


@pytest.fixture
def store(store_url: str | None) -> Iterator[Store]:
    s = Store()
    yield s
    s.close()
