"""Benchmark: teaching SmolLM2-135M-Instruct TREC question types from 100 labelled examples.

On ../shared/data/trec/: a class-balanced seed of 100 examples drawn with a fixed seed from
train.jsonl, and the 500-item test.jsonl as the held-out exam (constrained choice over the 6
labels). On the same seed and exam, with the same training seeds for every arm:

  (a) zero_shot  the untrained student
  (b) seed_only  LoRA fine-tuned on the seed alone (round 0)
  (c) llm2llm    vanilla LLM2LLM: `similar` only, the wrong answer not shown, no dedupe, no verification
  (d) magister   the full loop: similar + rephrase + explain + new + replay, the wrong answer
                 shown, ROUGE-L dedupe, verification by the teacher (12 seed examples as worked
                 examples, trusted only if it beats the most common label on seed items)

(c) and (d) start from the same round 0 (b), run the same number of rounds, and are scored on
their last trained round (no selection on the exam).

Training noise is as large as the effects here: the seed-only student scores between 56% and
81% depending on the training seed alone. So every arm is trained with --seeds training seeds,
its accuracy is the mean over them, and its interval and the paired tests come from a two-way
(training seed x item) analysis (magister.stats.runs) that counts the run-to-run spread. Each
seed's McNemar test, which holds that seed's trained models fixed, is kept in the JSON too.

    python benchmarks/teach_trec.py                       # about 35 minutes on 2 CPU cores
    python benchmarks/teach_trec.py --teacher openai-compatible:http://127.0.0.1:8000/v1#qwen
    python benchmarks/teach_trec.py --exam-limit 100 --seeds 1     # a smoke run
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
from magister.stats.runs import compare_runs, runs_interval
from magister.store import Store
from magister.teach import Teach, TeachConfig, TrainConfig

ROOT = Path(__file__).resolve().parent
DATA = ROOT.parent.parent / "shared" / "data" / "trec"
SEEDS, ROUNDS, EPOCHS, LEARNING_RATE = 3, 1, 5.0, 1e-3
MAGISTER_STRATEGIES = ["similar", "rephrase", "explain", "new", "replay"]


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


def arm(name: str, base: TeachConfig, work: Path, store: Store, **changes) -> Teach:  # noqa: ANN003
    """Run one teaching arm in work/name, re-using round 0 (and the zero-shot run) of the llm2llm arm."""
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


def grid(runs: list[dict[str, bool]], items: list[str]) -> list[list[bool]]:
    """Seeds x items: each training run's grades in one item order."""
    return [[run[i] for i in items] for run in runs]


def summary(runs: list[dict], items: list[str], grades_by_seed: list[dict[str, bool]]) -> dict:
    """One arm over its training runs: the mean accuracy with an interval that counts seeds and items."""
    estimate = runs_interval(grid(grades_by_seed, items))
    return {"accuracy": estimate.mean, "ci_low": estimate.ci_low, "ci_high": estimate.ci_high, "n": len(items),
            "seed_sd": estimate.seed_sd, "teacher_tokens": round(sum(r["teacher_tokens"] for r in runs) / len(runs)),
            "wall_s": sum(r["wall_s"] for r in runs) / len(runs), "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default="llamacpp:smollm2")
    parser.add_argument("--seeds", type=int, default=SEEDS, help="training seeds per arm (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--seed-size", type=int, default=100)
    parser.add_argument("--per-item", type=int, default=2)
    parser.add_argument("--epochs", type=float, default=EPOCHS)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=LEARNING_RATE)
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
    store = Store(work / "bench.db")  # one response cache: a teacher call repeated by another seed is free
    runs: dict[str, list[dict]] = {"seed_only": [], "llm2llm": [], "magister": []}
    graded: dict[str, list[dict[str, bool]]] = {name: [] for name in runs}
    rounds: dict[str, list] = {}
    zero: dict = {}
    for seed in range(args.seeds):
        train = TrainConfig(epochs=args.epochs, lora_r=args.lora_r, lora_alpha=2 * args.lora_r,
                            learning_rate=args.learning_rate, max_length=args.max_length, batch_size=8, seed=seed)
        base = TeachConfig(seed=seed_path, exam=DATA / "test.jsonl", teacher=args.teacher, student="smollm2",
                           rounds=args.rounds, per_item=args.per_item, exam_limit=args.exam_limit, train=train)
        here = work / f"seed-{seed}"
        if seed > 0 and not (here / "llm2llm" / "baseline.json").exists():  # the untrained student: sat once
            (here / "llm2llm").mkdir(parents=True, exist_ok=True)
            for shared in ("baseline.json", "baseline-grades.json"):
                shutil.copy(work / "seed-0" / "llm2llm" / shared, here / "llm2llm" / shared)
        taught = {"llm2llm": arm("llm2llm", base, here, store, strategies=["similar"], show_wrong_answer=False,
                                 dedupe="off", verify="off"),
                  "magister": arm("magister", base, here, store, strategies=MAGISTER_STRATEGIES,
                                  show_wrong_answer=True, dedupe="rouge", verify="teacher")}
        zero = taught["llm2llm"].baseline or {}
        round0 = taught["llm2llm"].rounds[0]
        runs["seed_only"].append(run_record(seed, round0.exam, 0, sum(round0.wall_s.values())))
        graded["seed_only"].append(grades(taught["llm2llm"], 0))
        for name, teach in taught.items():
            runs[name].append(run_record(seed, teach.final().exam, sum(r.teacher_tokens for r in teach.rounds),
                                         sum(sum(r.wall_s.values()) for r in teach.rounds[1:]), teach.stopped))
            graded[name].append(grades(teach))
            rounds.setdefault(name, []).append([r.to_dict() for r in teach.rounds])

    items = sorted(set.intersection(*(set(g) for arm_grades in graded.values() for g in arm_grades)))
    result: dict = {"zero_shot": {"accuracy": zero["accuracy"],
                                  **dict(zip(("ci_low", "ci_high"), wilson(zero["correct"], zero["n"]))),
                                  "n": zero["n"], "teacher_tokens": 0, "wall_s": zero.get("wall_s", 0.0)}}
    result.update({name: summary(runs[name], items, graded[name]) for name in runs})
    pairs = {"magister_vs_seed_only": ("magister", "seed_only"), "magister_vs_llm2llm": ("magister", "llm2llm"),
             "llm2llm_vs_seed_only": ("llm2llm", "seed_only")}
    detail = {key: {**compare_runs(grid(graded[a], items), grid(graded[b], items)).to_dict(),
                    "per_seed_mcnemar": [paired(x, y) for x, y in zip(graded[a], graded[b])]}
              for key, (a, b) in pairs.items()}
    result["paired"] = {**{key: d["p_value"] for key, d in detail.items()}, "detail": detail,
                        "test": "two-way (training seed x item) t test on the paired differences, Satterthwaite df; "
                                "per_seed_mcnemar holds each seed's models fixed"}
    result["rounds"] = rounds
    stage_s = zero.get("wall_s", 0.0) + sum(r["wall_s"] for arm_runs in runs.values() for r in arm_runs)
    result["settings"] = {
        "seeds": list(range(args.seeds)), "seed_size": args.seed_size, "seed_draw": "class-balanced, random.Random(0)",
        "exam_items": len(items), "student": "SmolLM2-135M-Instruct (embedded GGUF, de-quantised to float32)",
        "teacher": args.teacher, "rounds": args.rounds, "per_item": args.per_item,
        "magister_strategies": MAGISTER_STRATEGIES, "method": "lora", "lora_r": args.lora_r,
        "lora_alpha": 2 * args.lora_r, "target_modules": "all-linear", "epochs": args.epochs,
        "learning_rate": args.learning_rate, "batch_size": 8, "max_length": args.max_length,
        "scoring": "constrained choice over the 6 labels", "retrain": "from the base model each round",
        "verify_shots": base.verify_shots, "dedupe_threshold": base.dedupe_threshold,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, no GPU" if not _cuda() else "GPU",
        "process_wall_s": time.perf_counter() - started, "work_dir": str(work),
        # every stage's measured time, summed: the cost of the benchmark even when a rerun resumed it
        "total_wall_s": stage_s,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"{'arm':<10} {'accuracy':>9} {'95% CI':>13} {'runs':>24} {'teacher tok':>12}")
    for name in ("zero_shot", "seed_only", "llm2llm", "magister"):
        r = result[name]
        each = " ".join(f"{x['accuracy']:.1%}" for x in r.get("runs", []))
        print(f"{name:<10} {r['accuracy']:>9.1%} {r['ci_low']:>6.1%}-{r['ci_high']:<6.1%} {each:>24} "
              f"{r['teacher_tokens']:>12}")
    for key, d in detail.items():
        print(f"{key}: {d['mean']:+.1%} [{d['ci_low']:+.1%}, {d['ci_high']:+.1%}] p={d['p_value']:.3g} "
              f"(df {d['df']:.1f})")
    print(f"total stage time {stage_s:.0f} s")


def run_record(seed: int, exam: dict, teacher_tokens: int, wall_s: float, stopped: str | None = None) -> dict:
    return {"seed": seed, "accuracy": exam["accuracy"], "ci_low": exam["ci_low"], "ci_high": exam["ci_high"],
            "teacher_tokens": teacher_tokens, "wall_s": wall_s, **({"stopped": stopped} if stopped else {})}


def paired(a: dict[str, bool], b: dict[str, bool]) -> dict:
    shared = sorted(set(a) & set(b))
    return compare([a[i] for i in shared], [b[i] for i in shared], binary=True).to_dict()


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


if __name__ == "__main__":
    main()
