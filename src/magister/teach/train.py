"""Fine-tune the student on TRL: `SFTTrainer` with a peft LoRA (or full fine-tuning), loss on the answer only.

Each example is the exam prompt the student will see (the model's chat template, the exam's
instructions) followed by the target: the reference, in the form the grader reads, and the
end-of-turn token. `encode()` tokenises them here, once, exactly as the exam does; TRL gets the
ids and the labels (prompt tokens -100) as they are (`skip_prepare_dataset`: no second chat
template, no re-tokenisation, no truncation of its own). The loss is SFTTrainer's cross-entropy
over the answer tokens, but computed here (`compute_loss`) with the LM head run on the answer
positions alone (`logits_to_keep`): on CPU, TRL's own fused head projects every position, prompt
included, onto the vocabulary. Seeds are fixed (same data and seed, same losses), the sampler is
seeded, and the learning rate warms up then decays linearly over ceil(examples x epochs / batch)
steps, in float32. No tqdm, no trackers, no checkpoints: the rich bar shows steps, loss, tokens/s.

`objective: distill` trains the same answer positions toward a teacher's next-token
distributions instead (TRL's `GKDTrainer`, off-policy: `lmbda=0`, no generation; `distill_beta`
picks forward KL, reverse KL or a JSD between them). Teacher and student must share a tokenizer.

A round writes `adapter/` (LoRA weights alone) and `model/` (the adapter merged into the
base: a plain transformers directory that `hf:DIR` loads). Both appear only when complete.

Data-parallel: the same `train()` runs under `torchrun` (gloo on CPU, NCCL on GPUs); the batch
is split over the processes (`batch_size` stays the global batch), only rank 0 writes, and the
others wait for it. `python -m magister.teach.distributed` is the entry point:

    torchrun --nproc-per-node 2 -m magister.teach.distributed --base DIR --items data.jsonl \\
        --exam exam.jsonl --config train.yaml --out runs/r

GPUs with FSDP or DeepSpeed (NOT TESTED HERE: this project's tests and benchmarks run on CPU,
in one or two processes): the Trainer reads an accelerate config, so `accelerate config` (pick
FSDP or DeepSpeed) and then

    accelerate launch --config_file fsdp.yaml -m magister.teach.distributed ...

should shard the training. Saving is the part known to need work there: `save()` writes rank 0's
module, which under FSDP (unless `fsdp_state_dict_type: FULL_STATE_DICT`) or DeepSpeed ZeRO-3
holds only shards, so the full weights would have to be gathered before the merge.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import tempfile
import time
import warnings
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


def world_size() -> int:
    """Processes training together: torchrun's (or accelerate's) WORLD_SIZE, 1 in a plain process."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def steps_for(examples: int, config: TrainConfig, world: int = 1) -> tuple[int, int]:
    """(optimizer steps, batch per process): `batch_size` is the global batch, split over `world` processes."""
    per_device = max(1, math.ceil(config.batch_size / world))
    return max(1, math.ceil(examples * config.epochs / (per_device * world))), per_device


def train(base: Path, items: list[Item], exam: Exam, config: TrainConfig, out: Path,
          console: Console | None = None, progress: bool = True) -> TrainReport:
    """Fine-tune the model in `base` on `items` (asked as `exam` asks them); writes out/adapter and out/model."""
    try:
        import datasets
        import torch
        import transformers
        import trl
        from peft import LoraConfig
    except ImportError:
        raise BackendError("training needs torch, transformers, peft and trl: pip install 'magister[train]'") from None
    console = console or Console(stderr=True)
    transformers.utils.logging.disable_progress_bar()  # our own bar shows the steps
    datasets.disable_progress_bars()
    started = time.perf_counter()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(base))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    teacher = _teacher(config, base, tokenizer) if config.objective == "distill" else None
    rows = encode(tokenizer, items, exam, config.max_length)
    world = world_size()
    steps, per_device = steps_for(len(rows), config, world)
    model = transformers.AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    lora = config.method == "lora"
    peft_config = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                             target_modules="all-linear", task_type="CAUSAL_LM") if lora else None
    dataset = datasets.Dataset.from_dict({"input_ids": [ids for ids, _ in rows],
                                          "labels": [labels for _, labels in rows]})
    cpu = not torch.cuda.is_available()
    padding_free = config.padding_free and teacher is None  # the distillation loss reads the attention mask
    with tempfile.TemporaryDirectory(prefix="magister-train-") as scratch:
        settings: dict[str, Any] = dict(
            output_dir=scratch, report_to=[], disable_tqdm=True, save_strategy="no",
            eval_strategy="no", logging_strategy="steps", logging_steps=1, use_cpu=cpu,
            ddp_backend="gloo" if cpu and world > 1 else None, ddp_find_unused_parameters=False,
            dataloader_pin_memory=not cpu, seed=config.seed, data_seed=config.seed,
            per_device_train_batch_size=per_device, gradient_accumulation_steps=1, max_steps=steps,
            learning_rate=config.learning_rate, lr_scheduler_type="linear",
            warmup_steps=int(config.warmup_ratio * steps), weight_decay=0.0, max_grad_norm=1.0,
            bf16=False, fp16=False, activation_checkpointing=False, max_length=None, padding_free=padding_free,
            dataset_kwargs={"skip_prepare_dataset": True}, remove_unused_columns=False)
        common = dict(train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config)
        with warnings.catch_warnings():  # peft asks `is_gradient_checkpointing`, deprecated in transformers 5
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
            if teacher is None:  # SFTTrainer's own collator: pads (or flattens) the ids, labels as given
                trainer: Any = _trainer_class(trl.SFTTrainer, answer_logits=True)(
                    model=model, args=trl.SFTConfig(**settings), **common)
            else:
                warnings.simplefilter("ignore")  # and TRL's notice that GKD is "experimental"
                from trl.experimental.gkd import GKDConfig, GKDTrainer

                args = GKDConfig(**settings, lmbda=0.0, seq_kd=False, beta=config.distill_beta, temperature=1.0,
                                 disable_dropout=False)  # lmbda 0: off-policy, on the items' own answers
                collator = trl.trainer.sft_trainer.DataCollatorForLanguageModeling(
                    pad_token_id=tokenizer.pad_token_id)
                trainer = _trainer_class(GKDTrainer, answer_logits=False)(
                    model=model, teacher_model=teacher, args=args, data_collator=collator, **common)
        trainer.remove_callback(transformers.trainer_callback.PrinterCallback)
        main = trainer.accelerator.is_main_process
        columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("loss {task.fields[loss]} · {task.fields[rate]} tok/s"), TimeElapsedColumn()]
        bar = Progress(*columns, console=console, disable=not (progress and main))
        task = bar.add_task(f"train {out.name}", total=steps, loss="-", rate="-")
        losses: list[float] = []
        trainer.add_callback(_bar_callback(transformers.TrainerCallback, bar, task, losses, started))
        with bar:
            trainer.train()
        tokens = trainer.magister_tokens()
        trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
        if main:
            save(trainer.model, tokenizer, out, lora=lora)
        trainer.accelerator.wait_for_everyone()
    wall = time.perf_counter() - started
    head = losses[: max(1, len(losses) // 10)] or [math.nan]
    tail = losses[-max(1, len(losses) // 10):] or [math.nan]
    return TrainReport(examples=len(rows), steps=steps, trainable_params=trainable,
                       first_loss=sum(head) / len(head), last_loss=sum(tail) / len(tail),
                       tokens_per_s=tokens / wall, wall_s=wall, losses=losses)


def _teacher(config: TrainConfig, base: Path, tokenizer: Any) -> Any:
    """The distillation teacher, in float32, refused unless it shares the student's tokenizer and vocabulary."""
    import torch
    import transformers

    where = Path(str(config.distill_teacher)).expanduser()
    if not (where / "config.json").exists():
        raise ConfigError(f"distill_teacher '{config.distill_teacher}': no transformers model directory there")
    theirs = transformers.AutoTokenizer.from_pretrained(str(where))
    same = (theirs.get_vocab() == tokenizer.get_vocab() and theirs.eos_token == tokenizer.eos_token
            and theirs.chat_template == tokenizer.chat_template)
    sizes = [transformers.AutoConfig.from_pretrained(str(p)).get_text_config().vocab_size for p in (base, where)]
    if not same or sizes[0] != sizes[1]:
        raise ConfigError(f"distill_teacher '{where}' does not share the student's tokenizer (vocabulary, special "
                          f"tokens, chat template and vocab_size {sizes[1]} vs {sizes[0]} must match); logit "
                          "distillation compares the two models' distributions token by token")
    return transformers.AutoModelForCausalLM.from_pretrained(str(where), dtype=torch.float32).eval()


def _trainer_class(trainer_class: type, answer_logits: bool) -> type:
    """`trainer_class` that counts the tokens it trains on (padding excluded, over every process) and, with
    `answer_logits`, projects only the positions that predict an answer token onto the vocabulary."""
    import torch

    class Magister(trainer_class):  # type: ignore[misc, valid-type]
        _seen = 0

        def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> Any:
            mask = inputs.get("attention_mask")
            self._seen += int(mask.sum()) if mask is not None else int(inputs["input_ids"].numel())
            return super().training_step(model, inputs, num_items_in_batch)

        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            if not answer_logits:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            # The cross-entropy of SFTTrainer (a sum over the answer tokens / their number over all processes),
            # but the LM head runs on the answer positions alone: a few tokens of each example, not the prompt.
            targets = inputs["labels"][:, 1:]
            keep = torch.zeros_like(inputs["labels"], dtype=torch.bool)
            keep[:, :-1] = targets != -100  # the logits at t predict the token at t + 1
            forward = {k: v for k, v in inputs.items() if k != "labels"}
            outputs = model(**forward, use_cache=False, logits_to_keep=keep)
            logits = outputs.logits.reshape(-1, outputs.logits.size(-1))
            total = torch.nn.functional.cross_entropy(logits.float(), targets[targets != -100], reduction="sum")
            count = keep.sum() if num_items_in_batch is None else num_items_in_batch
            loss = total / torch.as_tensor(count, device=total.device).clamp(min=1)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes  # DDP averages the gradients over the processes
            return (loss, outputs) if return_outputs else loss

        def magister_tokens(self) -> int:
            local = torch.tensor([self._seen], device=self.args.device)
            return int(self.accelerator.reduce(local, reduction="sum").item())

        def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
            if "loss" in logs:  # every process logs each step together: the reduce is safe here
                logs["magister_tokens"] = self.magister_tokens()
            super().log(logs, *args, **kwargs)

    return Magister


def _bar_callback(base: type, bar: Progress, task: Any, losses: list[float], started: float) -> Any:
    """A TrainerCallback that keeps every step's loss (the mean over processes) and drives the rich bar."""

    class Bar(base):  # type: ignore[misc, valid-type]
        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None,
                   **kwargs: Any) -> None:
            if not logs or "loss" not in logs:
                return
            losses.append(float(logs["loss"]))
            rate = logs.get("magister_tokens", 0) / max(time.perf_counter() - started, 1e-9)
            bar.update(task, completed=state.global_step, loss=f"{losses[-1]:.3f}", rate=f"{rate:.0f}")

    return Bar()


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
