"""Human labels given in `magister view` (stored with who and when), as a judge-check file.

`magister labels RUN -o FILE.jsonl` writes them; `magister judge-check --run RUN` reads them
straight from the store, so a judge (or the run's own grader) is checked, and calibrated,
against the people who labelled that run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from magister.errors import ConfigError
from magister.jsonl import write_jsonl
from magister.rankings import find_run
from magister.store import Store


def labelled_rows(store: Store, run_id: str) -> list[dict[str, Any]]:
    """One row per labelled answer, in exam order: question, reference, response, human (the latest label),
    who labelled it, and the run's own grade."""
    run = find_run(store, run_id)
    latest: dict[str, tuple[bool, str]] = {}
    for item, who, correct, _ in store.labels(run.id):  # oldest first: the last one stands
        latest[item] = (correct, who)
    if not latest:
        raise ConfigError(f"run {run.id} has no human labels yet: label some with `magister view` (/label/{run.id})")
    rows = []
    for item in store.items(run.id, run.exam_version):
        if item.item_id in latest:
            human, who = latest[item.item_id]
            rows.append({"id": item.item_id, "question": item.input, "reference": item.reference,
                         "response": item.answer, "human": human, "labelled_by": who, "run_id": run.id,
                         "grader": run.grader, "grader_correct": item.correct, "grader_score": item.score})
    return rows


def write_labels(rows: list[dict[str, Any]], path: Path) -> Path:
    """Write rows as JSONL through a temporary file (never half a file)."""
    if not path.parent.is_dir():
        raise ConfigError(f"{path.parent}: no such folder")
    return write_jsonl(path, rows)
