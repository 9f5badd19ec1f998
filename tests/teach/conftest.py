"""Fixtures for the teach tests: a tiny in-code student, a sentiment task and a scripted teacher."""

from __future__ import annotations

from pathlib import Path

import pytest

from magister.models.mock import MockModel
from magister.teach import TeachConfig, TrainConfig
from helpers import NEGATIVE, POSITIVE, build_tiny_model, label_of, scripted, write_jsonl

pytest.importorskip("peft")

@pytest.fixture(scope="session")
def tiny_student(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("student"))


@pytest.fixture
def task(tmp_path: Path) -> tuple[Path, Path]:
    seed = [{"id": f"s{i}", "text": t, "label": label_of(t)} for i, t in enumerate(POSITIVE[:4] + NEGATIVE[:4])]
    exam = [{"id": f"e{i}", "text": t, "label": label_of(t)} for i, t in enumerate(POSITIVE[4:] + NEGATIVE[4:])]
    return write_jsonl(tmp_path / "seed.jsonl", seed), write_jsonl(tmp_path / "exam.jsonl", exam)


@pytest.fixture
def config(task: tuple[Path, Path], tiny_student: Path, tmp_path: Path) -> TeachConfig:
    seed, exam = task
    return TeachConfig(seed=seed, exam=exam, teacher="mock:teacher", student=str(tiny_student), rounds=2,
                       strategies=["similar", "rephrase", "explain", "new"], verify_shots=2, out=tmp_path / "run",
                       mine="seed", select="last",  # the in-sample loop; tests/teach/test_folds.py covers folds
                       train=TrainConfig(epochs=1, batch_size=4, learning_rate=1e-3))


@pytest.fixture
def teacher() -> MockModel:
    return MockModel("mock:teacher", respond=scripted)
