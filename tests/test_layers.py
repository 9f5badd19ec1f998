"""The layers of the package: every import (at the top of a module or inside a function) points down.

The order, lowest first; a room may import from its own layer and the ones below, never above
(as import-linter's `layers` contract does). docs/architecture.md draws the same picture.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "magister"
LAYERS = [
    {"types", "errors", "jsonl", "progress"},          # nouns, errors, files
    {"models", "store", "cache"},                       # backends, the store, every model call
    {"exams", "graders", "stats", "contextual"},        # loading exams, grading, statistics
    {"judges", "sit", "rankings", "labels"},            # judged grading, sitting an exam, rankings
    {"synth"},                                          # what a teacher writes and its filters
    {"teach"},                                          # the teaching loop
    {"web"},                                            # pages, charts, the static teach report
    {"cli", "demo", "__main__", "__init__"},            # commands: the cli package, one module per command group
]
RANK = {room: number for number, rooms in enumerate(LAYERS) for room in rooms}


def room(module: str) -> str:
    """The room of a dotted module name: 'magister.teach.loop' -> 'teach', 'magister' -> '__init__'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(path: Path, module: str) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] if node.module != "magister" else [f"magister.{a.name}" for a in node.names]
            found += [(name, node.lineno) for name in names if name.startswith("magister")]
        elif isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.startswith("magister")]
    return found


def test_every_room_has_a_layer() -> None:
    rooms = {path.relative_to(PACKAGE).parts[0].removesuffix(".py") for path in PACKAGE.rglob("*.py")}
    assert rooms <= set(RANK), f"put these in a layer of tests/test_layers.py: {sorted(rooms - set(RANK))}"


def test_no_import_points_up() -> None:
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(("magister", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
        for target, line in imports(path, module):
            if RANK[room(target)] > RANK[room(module)]:
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {module} imports {target}")
    assert not upward, "imports that point up a layer:\n" + "\n".join(upward)


def test_the_cli_package_is_the_top_layer() -> None:
    assert (PACKAGE / "cli").is_dir() and not (PACKAGE / "cli.py").exists()
    modules = [f"magister.cli.{path.stem}" for path in (PACKAGE / "cli").glob("*.py")]
    assert "magister.cli.main" in modules and {RANK[room(m)] for m in modules} == {len(LAYERS) - 1}


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from magister.web.app import create_app\n")
    [(target, line)] = imports(module, "magister.exams.m")
    assert RANK[room(target)] > RANK[room("magister.exams.m")] and line == 2
