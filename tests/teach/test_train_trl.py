"""Training on TRL: the tokens trained on are the exam's, the bar, distillation, and torchrun over gloo."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from magister.errors import ConfigError
from magister.teach import TrainConfig
from magister.teach.train import train
from magister.types import Exam, Item, Kind

from helpers import NEGATIVE, POSITIVE, WORDS, build_tiny_model, label_of, write_jsonl

pytestmark = pytest.mark.hf
transformers = pytest.importorskip("transformers")
trl = pytest.importorskip("trl")

LABELS = ["negative", "positive"]


def items(texts: list[str]) -> list[Item]:
    return [Item(id=t, input=t, reference=label_of(t), kind=Kind.classification, labels=LABELS) for t in texts]


def test_the_tokens_trained_on_are_the_tokens_the_exam_scores(tiny_student: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """What TRL's loss sees, batch by batch: the exam's request through the model's chat template (as `hf:`
    sends it), then the answer's tokens (as `hf:` scores the candidate) and the end of turn; only those carry loss."""
    from magister.exams.prompt import build_request
    from magister.models.hf import HFModel

    seen: list[tuple[list[int], list[int]]] = []
    original = trl.SFTTrainer.training_step

    def spy(self, model, inputs, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        ids, labels = inputs["input_ids"].tolist(), inputs["labels"].tolist()
        seen.extend(zip(ids, labels))
        return original(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(trl.SFTTrainer, "training_step", spy)
    exam = Exam(name="sentiment", items=[], instructions="Say if the text is {labels}.")
    data = items(["good movie", "awful food", "nice film"])
    config = TrainConfig(epochs=1, batch_size=1)
    train(tiny_student, data, exam, config, tmp_path / "r", progress=False)

    student = HFModel(f"hf:{tiny_student}")
    eos = student.tokenizer.eos_token_id
    expected = []
    for item in data:
        request = build_request(item, exam, use_choices=True)  # what `sit` sends for this item
        prompt = student._encode([student.format(request)])[0]
        answer = student.tokenizer(item.reference, add_special_tokens=False)["input_ids"]  # as _score_one reads it
        assert item.reference in (request.choices or [])
        expected.append((prompt + answer + [eos], [-100] * len(prompt) + answer + [eos]))
    assert sorted(seen) == sorted(expected)
    assert all(student.tokenizer.decode([t for t in labels if t != -100]) == f"{ref} </s>"
               for (_, labels), ref in zip(expected, [i.reference for i in data]))


def test_padding_free_trains_on_the_same_tokens_with_the_same_losses(tiny_student: Path, tmp_path: Path) -> None:
    data = items(POSITIVE[:3] + NEGATIVE[:3])
    config = TrainConfig(epochs=4, batch_size=3, learning_rate=1e-2, lora_r=4)
    padded = train(tiny_student, data, Exam(name="x", items=[]), config, tmp_path / "a", progress=False)
    flat = train(tiny_student, data, Exam(name="x", items=[]), config.model_copy(update={"padding_free": True}),
                 tmp_path / "b", progress=False)
    assert flat.steps == padded.steps == 8
    assert flat.losses == pytest.approx(padded.losses, rel=1e-4)
    other = train(tiny_student, data, Exam(name="x", items=[]), config.model_copy(update={"seed": 1}),
                  tmp_path / "c", progress=False)
    assert other.losses != padded.losses  # the seed shuffles the batches and initialises the adapter


def test_the_first_loss_is_the_models_own_cross_entropy_on_the_answers(tiny_student: Path, tmp_path: Path) -> None:
    """The LM head runs on the answer positions only; the loss is still transformers' mean over the answer tokens."""
    import torch

    from magister.teach.train import encode

    data = items(POSITIVE[:3] + NEGATIVE[:2])
    report = train(tiny_student, data, Exam(name="x", items=[]), TrainConfig(epochs=1, batch_size=5),
                   tmp_path / "r", progress=False)  # one step, every item: the order within the batch is moot
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(tiny_student))
    model = transformers.AutoModelForCausalLM.from_pretrained(str(tiny_student), dtype=torch.float32)
    rows = encode(tokenizer, data, Exam(name="x", items=[]), 128)
    width = max(len(ids) for ids, _ in rows)
    ids = torch.tensor([i + [0] * (width - len(i)) for i, _ in rows])
    labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in rows])
    mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in rows])
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask, labels=labels).loss.item()  # LoRA starts at B = 0
    assert report.losses == [pytest.approx(expected, rel=1e-5)]


def test_the_rich_bar_shows_steps_loss_and_rate_and_nothing_else_prints(
        tiny_student: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from rich.console import Console

    buffer = io.StringIO()
    console = Console(file=buffer, width=120, force_terminal=False)
    train(tiny_student, items(POSITIVE[:4]), Exam(name="x", items=[]), TrainConfig(epochs=2, batch_size=2),
          tmp_path / "round-1", console=console)
    shown = buffer.getvalue()
    assert "train round-1" in shown and "4/4" in shown and "tok/s" in shown and "loss " in shown
    out, err = capfd.readouterr()
    assert "{'loss'" not in out + err and "it/s]" not in out + err  # no PrinterCallback, no tqdm
    assert not (tmp_path / "round-1" / "runs").exists() and not list(tmp_path.rglob("checkpoint-*"))


def _teacher_like(student: Path, where: Path, seed: int = 1) -> Path:
    """Another tiny Llama with the student's tokenizer and different weights."""
    import torch

    config = transformers.AutoConfig.from_pretrained(str(student))
    torch.manual_seed(seed)
    transformers.LlamaForCausalLM(config).save_pretrained(where)
    transformers.AutoTokenizer.from_pretrained(str(student)).save_pretrained(where)
    return where


def test_logit_distillation_pulls_the_student_toward_the_teacher(tiny_student: Path, tmp_path: Path) -> None:
    teacher = _teacher_like(tiny_student, tmp_path / "teacher")
    data = items(POSITIVE[:4] + NEGATIVE[:4])
    config = TrainConfig(objective="distill", distill_teacher=str(teacher), method="full", epochs=20,
                         batch_size=4, learning_rate=1e-2, padding_free=True)  # ignored: distill pads
    report = train(tiny_student, data, Exam(name="x", items=[]), config, tmp_path / "d", progress=False)
    assert report.steps == 40 and report.losses[0] > 0
    assert report.last_loss < report.first_loss * 0.5  # the KL on the answer positions falls
    assert (tmp_path / "d" / "model" / "model.safetensors").exists()
    again = train(tiny_student, data, Exam(name="x", items=[]), config, tmp_path / "e", progress=False)
    assert again.losses == report.losses
    lora = train(tiny_student, data, Exam(name="x", items=[]),
                 config.model_copy(update={"method": "lora", "epochs": 2}), tmp_path / "f", progress=False)
    assert (tmp_path / "f" / "adapter" / "adapter_config.json").exists() and lora.steps == 4


def test_distillation_refuses_a_teacher_with_another_tokenizer(tiny_student: Path, tmp_path: Path) -> None:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers

    with pytest.raises(ValueError, match="distill_teacher"):
        TrainConfig(objective="distill")
    specials = ["<pad>", "<s>", "</s>", "<unk>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
    vocab = {t: i for i, t in enumerate(specials + list(reversed(WORDS)))}  # the same words under other ids
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    other = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>",
                                                 eos_token="</s>", unk_token="<unk>")
    config = transformers.AutoConfig.from_pretrained(str(tiny_student))
    torch.manual_seed(2)
    transformers.LlamaForCausalLM(config).save_pretrained(tmp_path / "stranger")
    other.save_pretrained(tmp_path / "stranger")
    with pytest.raises(ConfigError, match="does not share the student's tokenizer"):
        train(tiny_student, items(POSITIVE[:2]), Exam(name="x", items=[]),
              TrainConfig(objective="distill", distill_teacher=str(tmp_path / "stranger")), tmp_path / "x",
              progress=False)
    assert not (tmp_path / "x").exists()
    with pytest.raises(ConfigError, match="no transformers model directory"):
        train(tiny_student, items(POSITIVE[:2]), Exam(name="x", items=[]),
              TrainConfig(objective="distill", distill_teacher=str(tmp_path / "nowhere")), tmp_path / "y",
              progress=False)


def test_the_entry_point_trains_in_one_process_from_files(tiny_student: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from magister.teach.distributed import main, read_train_config

    data = tmp_path / "data.jsonl"  # a teaching round's own Item rows
    data.write_text("".join(i.model_dump_json() + "\n" for i in items(POSITIVE[:2] + NEGATIVE[:2])))
    exam = write_jsonl(tmp_path / "exam.jsonl", [{"text": t, "label": label_of(t)} for t in POSITIVE[4:] + NEGATIVE[4:]])
    (tmp_path / "c.yaml").write_text("epochs: 1\nbatch_size: 2\nmethod: full\n")
    assert main(["--base", str(tiny_student), "--items", str(data), "--exam", str(exam), "--config",
                 str(tmp_path / "c.yaml"), "--out", str(tmp_path / "r"), "--no-progress"]) == 0
    report = json.loads((tmp_path / "r" / "train.json").read_text())
    assert report["world_size"] == 1 and report["steps"] == 2 and (tmp_path / "r" / "model").is_dir()
    assert "on 1 process(es)" in capsys.readouterr().out
    (tmp_path / "bad.yaml").write_text("train: {epochs: -1}\n")
    with pytest.raises(ConfigError, match="epochs"):
        read_train_config(tmp_path / "bad.yaml")


@pytest.mark.slow
def test_torchrun_trains_data_parallel_over_gloo_and_only_rank_0_writes(tmp_path: Path) -> None:
    """Two CPU processes under torchrun: the batch is split over them, rank 0 writes adapter/, model/ and
    train.json, and the report says world size 2 (about 30-60 s, most of it importing torch twice)."""
    base = build_tiny_model(tmp_path / "student")
    data = write_jsonl(tmp_path / "data.jsonl", [{"id": f"s{i}", "text": t, "label": label_of(t)}
                                                 for i, t in enumerate(POSITIVE + NEGATIVE)])
    exam = write_jsonl(tmp_path / "exam.jsonl", [{"id": f"e{i}", "text": t, "label": label_of(t)}
                                                 for i, t in enumerate(POSITIVE[:2] + NEGATIVE[:2])])
    (tmp_path / "train.yaml").write_text("train: {epochs: 2, batch_size: 4, learning_rate: 0.01, lora_r: 4}\n")
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "magister.teach.distributed", "--base", str(base), "--items", str(data), "--exam", str(exam),
         "--config", str(tmp_path / "train.yaml"), "--out", str(out), "--no-progress"],
        capture_output=True, text=True, env=env, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "train.json").read_text())
    assert report["world_size"] == 2 and report["backend"] == "gloo"  # the Trainer's process group, not just env
    assert report["examples"] == 16 and report["steps"] == 8  # 16 x 2 epochs / a global batch of 4 (2 a process)
    assert "on 2 process(es)" in result.stdout and result.stdout.count("trained 16 examples") == 1
    assert (out / "adapter" / "adapter_config.json").exists() and (out / "model" / "model.safetensors").exists()
    assert not list(out.glob("*.partial"))
