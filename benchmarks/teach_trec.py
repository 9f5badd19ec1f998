"""Benchmark: teaching SmolLM2-135M-Instruct TREC question types from 100 labelled examples.

On ../shared/data/trec/: a class-balanced seed of 100 examples drawn with a fixed seed from
train.jsonl, and the 500-item test.jsonl as the held-out exam (constrained choice over the 6
labels). One run, on the same seed and exam:

  (a) zero_shot  the untrained student
  (b) seed_only  LoRA fine-tuned on the seed alone (round 0)
  (c) llm2llm    vanilla LLM2LLM: `similar` only, the wrong answer not shown, no dedupe, no verification
  (d) magister   the full loop: similar + rephrase + explain + new + replay, the wrong answer
                 shown, ROUGE-L dedupe, verification by the teacher (12 seed examples as worked
                 examples, trusted only if it beats the most common label on seed items)

(c) and (d) start from the same round 0 (b), run the same number of rounds, and are scored on
their last trained round (no selection on the exam). Paired McNemar tests: (d) vs (b), (d) vs (c).

    python benchmarks/teach_trec.py                       # about 30 minutes on 2 CPU cores
    python benchmarks/teach_trec.py --teacher openai-compatible:http://127.0.0.1:8000/v1#qwen
    python benchmarks/teach_trec.py --exam-limit 100 --rounds 1      # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import time
from pathlib import Path

from magister.stats import wilson
from magister.stats.paired import compare
from magister.store import Store
from magister.teach import Teach, TeachConfig, TrainConfig

ROOT = Path(__file__).resolve().parent
DATA = ROOT.parent.parent / "shared" / "data" / "trec"


def balanced_seed(n: int, seed: int) -> list[dict]:
    """n examples from TREC train, as even over the 6 labels as the data allows, reproducibly."""
    rows = [json.loads(line) for line in (DATA / "train.jsonl").read_text().splitlines()]
    random.Random(seed).shuffle(rows)
    by_label: dict[str, list[dict]] = {}
    for row in rows:
        by_label.setdefault(row["label"], []).append(row)
    chosen: list[dict] = []
    while len(chosen) < n:
        for group in by_label.values():
            if group and len(chosen) < n:
                chosen.append(group.pop())
    return [{"id": r["id"], "text": r["text"], "label": r["label"]} for r in chosen]


def scored(summary: dict, teacher_tokens: int, wall_s: float) -> dict:
    return {"accuracy": summary["accuracy"], "ci_low": summary["ci_low"], "ci_high": summary["ci_high"],
            "n": summary["n"], "teacher_tokens": teacher_tokens, "wall_s": wall_s}


def arm(name: str, base: TeachConfig, work: Path, store: Store, **changes) -> Teach:  # noqa: ANN003
    """Run one teaching arm in work/name, re-using round 0 and the zero-shot run of the first arm."""
    config = base.model_copy(update={"out": work / name, **changes})
    first = work / "llm2llm"
    if name != "llm2llm" and not (config.out / "state.json").exists():
        config.out.mkdir(parents=True, exist_ok=True)
        for shared in ("baseline.json", "baseline-grades.json"):
            shutil.copy(first / shared, config.out / shared)
        shutil.copytree(first / "round-0", config.out / "round-0", dirs_exist_ok=True)
    teach = Teach(config, resume=(config.out / "state.json").exists(), store=store)
    teach.run()
    return teach


def grades(teach: Teach, round_: int | None = None) -> dict[str, bool]:
    number = teach.final().round if round_ is None else round_
    return json.loads((teach.out / f"round-{number}" / "grades.json").read_text())


def paired(a: dict[str, bool], b: dict[str, bool]) -> dict:
    shared = sorted(set(a) & set(b))
    return compare([a[i] for i in shared], [b[i] for i in shared], binary=True).to_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default="llamacpp:smollm2")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed-size", type=int, default=100)
    parser.add_argument("--per-item", type=int, default=2)
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--max-length", type=int, default=96)
    parser.add_argument("--exam-limit", type=int, default=None, help="first N test items (default all 500)")
    parser.add_argument("--work", default=None, help="working directory (default: a fresh temporary one)")
    parser.add_argument("--out", default=str(ROOT / "results" / "teach_trec.json"))
    args = parser.parse_args()

    started = time.perf_counter()
    import tempfile

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="teach_trec-"))
    work.mkdir(parents=True, exist_ok=True)
    seed_path = work / "seed.jsonl"
    seed_path.write_text("".join(json.dumps(r) + "\n" for r in balanced_seed(args.seed_size, 0)))
    train = TrainConfig(epochs=args.epochs, lora_r=args.lora_r, lora_alpha=2 * args.lora_r,
                        learning_rate=args.learning_rate, max_length=args.max_length, batch_size=8, seed=0)
    base = TeachConfig(seed=seed_path, exam=DATA / "test.jsonl", teacher=args.teacher, student="smollm2",
                       rounds=args.rounds, per_item=args.per_item, exam_limit=args.exam_limit, train=train)
    store = Store(work / "bench.db")  # a fresh response cache: every teacher call is paid for

    llm2llm = arm("llm2llm", base, work, store, strategies=["similar"], show_wrong_answer=False, dedupe="off",
                  verify="off")
    magister = arm("magister", base, work, store, strategies=["similar", "rephrase", "explain", "new", "replay"],
                   show_wrong_answer=True, dedupe="rouge", verify="teacher")

    zero = llm2llm.baseline or {}
    round0 = llm2llm.rounds[0]
    taught = {name: t for name, t in (("llm2llm", llm2llm), ("magister", magister))}

    def teacher_tokens(t: Teach) -> int:
        return sum(r.teacher_tokens for r in t.rounds)

    def wall(t: Teach) -> float:
        return sum(sum(r.wall_s.values()) for r in t.rounds[1:])

    result: dict = {
        "zero_shot": scored({**zero, **dict(zip(("ci_low", "ci_high"), wilson(zero["correct"], zero["n"])))}, 0,
                            zero.get("wall_s", 0.0)),
        "seed_only": scored(round0.exam, 0, sum(round0.wall_s.values())),
        **{name: scored(t.final().exam, teacher_tokens(t), wall(t)) for name, t in taught.items()},
    }
    final = {name: grades(t) for name, t in taught.items()}
    seed_grades = grades(llm2llm, 0)
    result["paired"] = {
        "magister_vs_seed_only": paired(final["magister"], seed_grades)["p_value"],
        "magister_vs_llm2llm": paired(final["magister"], final["llm2llm"])["p_value"],
        "llm2llm_vs_seed_only": paired(final["llm2llm"], seed_grades)["p_value"],
        "detail": {"magister_vs_seed_only": paired(final["magister"], seed_grades),
                   "magister_vs_llm2llm": paired(final["magister"], final["llm2llm"]),
                   "llm2llm_vs_seed_only": paired(final["llm2llm"], seed_grades)},
    }
    result["rounds"] = {name: [r.to_dict() for r in t.rounds] for name, t in taught.items()}
    result["stopped"] = {name: t.stopped for name, t in taught.items()}
    result["settings"] = {
        "seed_size": args.seed_size, "seed_draw": "class-balanced, random.Random(0)", "exam_items": zero.get("n"),
        "student": "SmolLM2-135M-Instruct (embedded GGUF, de-quantised to float32)", "teacher": args.teacher,
        "rounds": args.rounds, "per_item": args.per_item, "method": "lora", "lora_r": args.lora_r,
        "lora_alpha": 2 * args.lora_r, "target_modules": "all-linear", "epochs": args.epochs,
        "learning_rate": args.learning_rate, "batch_size": 8, "max_length": args.max_length,
        "scoring": "constrained choice over the 6 labels", "retrain": "from the base model each round",
        "verify_shots": base.verify_shots, "dedupe_threshold": base.dedupe_threshold,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, no GPU" if not _cuda() else "GPU",
        "process_wall_s": time.perf_counter() - started, "work_dir": str(work),
        # every stage's measured time, summed: the cost of the benchmark even when a rerun resumed it
        "total_wall_s": zero.get("wall_s", 0.0) + sum(round0.wall_s.values()) + sum(wall(t) for t in taught.values()),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"{'arm':<10} {'accuracy':>9} {'95% CI':>17} {'teacher tok':>12} {'wall s':>8}")
    for name in ("zero_shot", "seed_only", "llm2llm", "magister"):
        r = result[name]
        print(f"{name:<10} {r['accuracy']:>9.1%} {r['ci_low']:>8.1%}-{r['ci_high']:<8.1%} {r['teacher_tokens']:>12} "
              f"{r['wall_s']:>8.0f}")
    print(f"magister vs seed_only p={result['paired']['magister_vs_seed_only']:.3g}; "
          f"vs llm2llm p={result['paired']['magister_vs_llm2llm']:.3g}; total {result['settings']['total_wall_s']:.0f} s")


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


if __name__ == "__main__":
    main()
