"""Fine-tune the student: LoRA (peft) or full fine-tuning with transformers, loss on the answer only.

Each example is the exam prompt the student will see (the model's chat template, the exam's
instructions) followed by the target: the reference, in the form the grader reads, and the
end-of-turn token. Prompt tokens are masked out of the loss. Seeds are fixed, batches are
shuffled with a seeded generator, and the learning rate warms up then decays linearly.

A round writes `adapter/` (LoRA weights alone) and `model/` (the adapter merged into the
base: a plain transformers directory that `hf:DIR` loads). Both appear only when complete.
"""

from __future__ import annotations

import hashlib
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from magister.errors import BackendError, ConfigError
from magister.exams.prompt import answer_text, build_request
from magister.teach.config import TrainConfig
from magister.types import Exam, Item, Kind


@dataclass
class TrainReport:
    examples: int
    steps: int
    trainable_params: int
    first_loss: float
    last_loss: float
    tokens_per_s: float
    wall_s: float
    losses: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def target_text(item: Item) -> str:
    """What the student learns to write for an item; a rationale goes where the grader can still read the answer."""
    answer = answer_text(item)
    rationale = item.meta.get("rationale")
    if not rationale:
        return answer
    if item.kind is Kind.numeric:  # the grader reads '#### N' from the last line: reasoning first
        return f"{rationale}\n#### {item.reference}"
    return f"{answer}\nReason: {rationale}"  # the first tokens are scored as the answer: answer first


def base_model_dir(student: str, cache: Path) -> Path:
    """A transformers directory for the student: a model directory as given, a GGUF converted once into `cache`."""
    if student == "smollm2":
        from magister.models.llamacpp import embedded_path

        path = embedded_path("smollm2")
    else:
        path = Path(student).expanduser()
    if path.is_dir():
        return path
    if not path.is_file():
        raise ConfigError(f"student '{student}': no model directory or GGUF file there")
    digest = hashlib.sha256(f"{path.resolve()}:{path.stat().st_size}".encode()).hexdigest()[:10]
    out = cache / f"{path.stem}-{digest}"
    if (out / "config.json").exists():
        return out
    import torch
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                              dtype=torch.float32)
    model.hf_quantizer = None  # de-quantised to float32 already: save it as a plain model
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.rename(out)
    return out


def encode(tokenizer: Any, items: list[Item], exam: Exam, max_length: int) -> list[tuple[list[int], list[int]]]:
    """(input ids, labels) per item; the prompt is masked with -100 and loses its start if too long."""
    rows = []
    for item in items:
        messages = [m.model_dump() for m in build_request(item, exam, use_choices=False).messages or []]
        prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        target_ids = tokenizer(target_text(item) + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        target_ids = target_ids[:max_length - 1]
        prompt_ids = prompt_ids[-(max_length - len(target_ids)):]
        rows.append((prompt_ids + target_ids, [-100] * len(prompt_ids) + target_ids))
    return rows


def train(base: Path, items: list[Item], exam: Exam, config: TrainConfig, out: Path,
          console: Console | None = None, progress: bool = True) -> TrainReport:
    """Fine-tune the model in `base` on `items` (asked as `exam` asks them); writes out/adapter and out/model."""
    try:
        import torch
        import transformers
    except ImportError:
        raise BackendError("training needs torch, transformers and peft: pip install 'magister[hf]'") from None
    console = console or Console(stderr=True)
    transformers.utils.logging.disable_progress_bar()  # our own bar shows the steps
    started = time.perf_counter()
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(base))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = transformers.AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32).to(device)
    if config.method == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha,
                                                 lora_dropout=config.lora_dropout, target_modules="all-linear",
                                                 task_type="CAUSAL_LM"))
    model.train()
    rows = encode(tokenizer, items, exam, config.max_length)
    steps = max(1, math.ceil(len(rows) * config.epochs / config.batch_size))
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=0.0)
    schedule = transformers.get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * steps), steps)
    order: list[int] = []
    shuffler = random.Random(config.seed)
    losses: list[float] = []
    tokens = 0
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]} · {task.fields[rate]} tok/s"), TimeElapsedColumn()]
    with Progress(*columns, console=console, disable=not progress) as bar:
        task = bar.add_task(f"train {out.name}", total=steps, loss="-", rate="-")
        for _ in range(steps):
            if len(order) < config.batch_size:
                epoch = list(range(len(rows)))
                shuffler.shuffle(epoch)
                order.extend(epoch)
            batch = [rows[i] for i in order[:config.batch_size]]
            del order[:config.batch_size]
            width = max(len(ids) for ids, _ in batch)
            ids = torch.tensor([i + [tokenizer.pad_token_id] * (width - len(i)) for i, _ in batch], device=device)
            labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in batch], device=device)
            mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in batch], device=device)
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            losses.append(loss.item())
            tokens += int(mask.sum())
            bar.update(task, advance=1, loss=f"{losses[-1]:.3f}",
                       rate=f"{tokens / (time.perf_counter() - started):.0f}")
    save(model, tokenizer, out, lora=config.method == "lora")
    wall = time.perf_counter() - started
    head = losses[: max(1, len(losses) // 10)]
    tail = losses[-max(1, len(losses) // 10):]
    return TrainReport(examples=len(rows), steps=steps, trainable_params=sum(p.numel() for p in parameters),
                       first_loss=sum(head) / len(head), last_loss=sum(tail) / len(tail),
                       tokens_per_s=tokens / wall, wall_s=wall, losses=losses)


def save(model: Any, tokenizer: Any, out: Path, lora: bool) -> None:
    """Write adapter/ and model/ under `out`, each through a temporary name so a kill leaves none half-written."""
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    if lora:
        adapter = out / "adapter.partial"
        shutil.rmtree(adapter, ignore_errors=True)
        model.save_pretrained(adapter)
        shutil.rmtree(out / "adapter", ignore_errors=True)
        adapter.rename(out / "adapter")
        model = model.merge_and_unload()
    merged = out / "model.partial"
    shutil.rmtree(merged, ignore_errors=True)
    model.save_pretrained(merged)
    tokenizer.save_pretrained(merged)
    shutil.rmtree(out / "model", ignore_errors=True)
    merged.rename(out / "model")
