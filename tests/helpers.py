"""Helpers shared by tests: small exams and slices of the shared data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from magister.types import Exam, Item, Kind

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def sentiment_exam(n: int = 20) -> Exam:
    labels = ["negative", "positive"]
    items = [Item(id=f"s{i}", input=f"text number {i}", reference=labels[i % 2], kind=Kind.classification,
                  labels=labels) for i in range(n)]
    return Exam(name="sentiment", items=items)


def trec_slice(n: int, split: str = "test") -> list[dict]:
    """The first n rows of the shared TREC data (skips the test when ../shared is absent)."""
    path = SHARED / "trec" / f"{split}.jsonl"
    if not path.exists():
        pytest.skip("../shared/data is not beside the project")
    with path.open() as f:
        return [json.loads(next(f)) for _ in range(n)]
