"""Training speed: `magister.teach.train` on TRL against the hand-written loop it replaced, tokens/s.

The same items (the first N of ../shared/data/trec/train.jsonl, asked with the TREC test exam's
prompt and labels), the same student (SmolLM2-135M-Instruct, converted once from the embedded GGUF
into $MAGISTER_HOME/students), the same LoRA settings and seed, trained by:

- plain:            the loop `train.py` was before it moved onto TRL, kept verbatim below as
                    `_train_plain` (padded batches, full logits, AdamW, linear warmup/decay);
- trl:              `train()` as shipped: SFTTrainer, padded batches, the LM head run on the answer
                    positions alone (`logits_to_keep`);
- trl_stock_loss:   `train()` with SFTTrainer's own loss (its fused LM head, which on CPU projects
                    every position, prompt included, in chunks);
- trl_padding_free: `train()` with `padding_free: true` (each batch one row, no pad tokens, every
                    example still attending only to itself).

Two rates per run, over the same count of tokens (the non-padding tokens trained on, as each
reports them): in the loop (from the LR scheduler's construction, just before the first step, to
its last step: the Trainer's dataloader and accelerate set-up fall inside) and end to end (the whole
call: load, train, merge and save). The runs alternate in one process (plain, trl, the other two
once, trl, plain), after one uncounted step of each (the first run in a process was much slower
than later ones), so drift on a shared machine falls on both headline arms alike; an arm's rate is
its total tokens over its total time. Each run's losses are kept in the JSON as a check that they
train the same thing (the TRL arms share a sampler, so their losses match each other; the plain
loop shuffles differently).

    MAGISTER_HOME=/tmp/mhome python benchmarks/train_speed.py [--items 48] [--epochs 1] [--batch 8]

Writes benchmarks/results/train_speed.json.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

ROOT = Path(__file__).resolve().parents[1]
TREC = ROOT.parent / "shared" / "data" / "trec"
sys.path.insert(0, str(ROOT / "src"))

from magister.errors import BackendError  # noqa: E402
from magister.teach.config import TrainConfig  # noqa: E402
from magister.teach.train import TrainReport, encode, save  # noqa: E402
from magister.types import Exam, Item  # noqa: E402


def _train_plain(base: Path, items: list[Item], exam: Exam, config: TrainConfig, out: Path,
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


def trec_items(n: int) -> tuple[list[Item], Exam]:
    """The first n TREC train rows as items, with the test exam's prompt and its six labels."""
    from magister.exams.load import load_exam

    exam = load_exam(TREC / "test.jsonl")
    labels = sorted({i.reference for i in exam.items})
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "train.jsonl"
        path.write_text("".join(line + "\n" for line in (TREC / "train.jsonl").read_text().splitlines()[:n]))
        items = load_exam(path).items
    items = [i.model_copy(update={"labels": labels}) for i in items]
    return items, Exam(name=exam.name, items=[], instructions=exam.instructions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=48)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--order", default="plain,trl,trl_stock_loss,trl_padding_free,trl,plain",
                        help="The runs, in order: plain and trl twice each (A B ... B A), the other two once.")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "train_speed.json")
    args = parser.parse_args()

    import torch

    from magister.store import user_dir
    from magister.teach.train import base_model_dir, train

    base = base_model_dir("smollm2", user_dir() / "students")
    items, exam = trec_items(args.items)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch, learning_rate=3e-4, lora_r=8)
    import magister.teach.train as module

    def stock(out: Path) -> TrainReport:
        """train() with SFTTrainer's own compute_loss, for the comparison only."""
        shipped = module._trainer_class
        module._trainer_class = lambda cls, answer_logits: shipped(cls, answer_logits=False)
        try:
            return train(base, items, exam, config, out, progress=False)
        finally:
            module._trainer_class = shipped

    arms: dict[str, Any] = {
        "plain": lambda out: _train_plain(base, items, exam, config, out, progress=False),
        "trl": lambda out: train(base, items, exam, config, out, progress=False),
        "trl_stock_loss": stock,
        "trl_padding_free": lambda out: train(base, items, exam, config.model_copy(update={"padding_free": True}),
                                              out, progress=False),
    }
    order = args.order.split(",")
    # Every LR scheduler step, timed: the first is the scheduler's construction just before the loop (both
    # sides build it there; the Trainer's dataloader and accelerate set-up fall inside), the last ends it.
    marks: list[float] = []
    step = torch.optim.lr_scheduler.LambdaLR.step

    def timed(self, *a: Any, **k: Any) -> Any:  # noqa: ANN001
        out = step(self, *a, **k)
        marks.append(time.perf_counter())
        return out

    torch.optim.lr_scheduler.LambdaLR.step = timed  # type: ignore[method-assign]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in dict.fromkeys(order)}
    with tempfile.TemporaryDirectory() as scratch:
        # Not counted: one step of each side first, so that neither pays the process's first-run costs.
        few, one = items[: args.batch], config.model_copy(update={"epochs": 1.0})
        _train_plain(base, few, exam, one, Path(scratch) / "warm-plain", progress=False)
        train(base, few, exam, one, Path(scratch) / "warm-trl", progress=False)
        for k, name in enumerate(order):
            marks.clear()
            started = time.perf_counter()
            report = arms[name](Path(scratch) / f"{name}-{k}")
            ended = time.perf_counter()
            tokens = report.tokens_per_s * report.wall_s
            row = {"tokens_per_s": report.tokens_per_s, "wall_s": report.wall_s, "steps": report.steps,
                   "tokens": tokens, "loop_s": marks[-1] - marks[0], "before_loop_s": marks[0] - started,
                   "after_loop_s": ended - marks[-1], "loop_tokens_per_s": tokens / (marks[-1] - marks[0]),
                   "losses": report.losses}
            runs[name].append(row)
            print(f"{name:18s} {report.tokens_per_s:8.1f} tok/s end to end ({report.wall_s:6.1f} s), "
                  f"{row['loop_tokens_per_s']:8.1f} tok/s in the loop ({row['loop_s']:6.1f} s; before "
                  f"{row['before_loop_s']:5.1f} s, after {row['after_loop_s']:5.1f} s)  "
                  f"loss {report.first_loss:.3f} -> {report.last_loss:.3f}", flush=True)
    torch.optim.lr_scheduler.LambdaLR.step = step  # type: ignore[method-assign]
    end_to_end = {name: sum(r["tokens"] for r in rows) / sum(r["wall_s"] for r in rows)
                  for name, rows in runs.items()}
    loop = {name: sum(r["tokens"] for r in rows) / sum(r["loop_s"] for r in rows) for name, rows in runs.items()}
    result = {
        "items": len(items), "epochs": args.epochs, "batch_size": args.batch, "lora_r": config.lora_r,
        "student": str(base.name), "order": order,
        "loop_tokens_per_s": loop,
        "loop_ratio_over_plain": {name: rate / loop["plain"] for name, rate in loop.items()},
        "end_to_end_tokens_per_s": end_to_end,
        "end_to_end_ratio_over_plain": {name: rate / end_to_end["plain"] for name, rate in end_to_end.items()},
        "ratio_trl_over_plain": loop["trl"] / loop["plain"],
        "warmup": f"one uncounted step of plain and of trl on the first {args.batch} items",
        "runs": runs,
        "note": "one run on a shared 2-core CPU machine (other benchmarks were running): ratios measured in the "
                "same process, arms alternated; absolute rates are not comparable across machines",
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "cuda": torch.cuda.is_available()},
    }
    import trl
    import transformers

    result["machine"].update({"trl": trl.__version__, "transformers": transformers.__version__})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{'arm':18s} {'loop tok/s':>10s} {'vs plain':>8s} {'end-to-end':>10s} {'vs plain':>8s}")
    for name in runs:
        print(f"{name:18s} {loop[name]:10.1f} {loop[name] / loop['plain']:7.2f}x "
              f"{end_to_end[name]:10.1f} {end_to_end[name] / end_to_end['plain']:7.2f}x")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
