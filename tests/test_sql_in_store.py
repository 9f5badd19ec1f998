"""Every SQL statement lives in store.py: no other module calls `.execute(` or `.executemany(` on a
database connection (issue #21). A page or a ranking that needs a new query gets a Store method."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "magister"
SQL_CALLS = {"execute", "executemany", "executescript"}


def sql_calls(path: Path) -> list[tuple[str, int]]:
    """(the call as written, line) of every `x.execute(...)`-like call in a module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in SQL_CALLS:
            found.append((f"{ast.unparse(node.func.value)}.{node.func.attr}(", node.lineno))
    return sorted(found, key=lambda call: call[1])


def test_only_the_store_runs_sql() -> None:
    outside = [f"{path.relative_to(PACKAGE.parent)}:{line}: {call}"
               for path in sorted(PACKAGE.rglob("*.py")) if path != PACKAGE / "store.py"
               for call, line in sql_calls(path)]
    assert not outside, "SQL outside store.py (add a Store method instead):\n" + "\n".join(outside)


def test_the_check_sees_sql_outside_the_store(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f(store):\n    return store.db.execute('SELECT 1').fetchone()\n\n"
                      "def g(db, rows):\n    db.executemany('INSERT INTO t VALUES (?)', rows)\n")
    assert sql_calls(module) == [("store.db.execute(", 2), ("db.executemany(", 5)]
    assert sql_calls(PACKAGE / "store.py")  # and it sees the store's own
