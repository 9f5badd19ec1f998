"""Sitting an exam on Ray: items/s with 1 and with 2 actors (`magister exam --ray --actors N`), and locally.

The first 100 items of the TREC test set (6 labels, a 12-shot class-balanced prompt from TREC
train), answered by constrained choice on `llamacpp:smollm2`. Each configuration sits the exam
with a fresh store, so every request is a cache miss, asked, stored and graded; the time to
start the actors (each loads its own copy of the model) is reported apart from items/s. The
configurations run one after another in one process, the order reversed on every repeat
(ABC, CBA, ...) so drift on the machine falls on all of them. Each actor asks Ray for
`--actor-cpus` CPUs and its backend computes with that many threads (at least one:
MAGISTER_THREADS, set by the pool), so two actors of half a CPU on two cores run one thread each.

    python benchmarks/exam_ray.py [--limit 100] [--shots 12] [--repeats 1] [--actor-cpus 0.5]

Writes benchmarks/results/exam_ray.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TREC = ROOT.parent / "shared" / "data" / "trec"
SPEC = "llamacpp:smollm2"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--shots", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--actor-cpus", type=float, default=0.5)
    parser.add_argument("--no-local", action="store_true", help="Skip the local (no Ray) reference run.")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "exam_ray.json")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="magister-bench-"))
    os.environ["MAGISTER_HOME"] = str(home)
    from magister.exams.load import load_exam, pick_fewshot
    from magister.models.base import load_model
    from magister.models.ray_pool import RayPool, connect
    from magister.sit import sit
    from magister.store import Store

    exam = load_exam(TREC / "test.jsonl", limit=args.limit, name="trec-test")
    exam.fewshot = pick_fewshot(load_exam(TREC / "train.jsonl").items, args.shots, seed=0)
    began = time.perf_counter()
    connect(2 * args.actor_cpus)
    ray_start_s = time.perf_counter() - began

    configs = ["ray-1", "ray-2"] + ([] if args.no_local else ["local"])
    times: dict[str, list[float]] = {c: [] for c in configs}
    starts: dict[str, list[float]] = {c: [] for c in configs}
    answers: dict[str, list[str]] = {}
    accuracy: dict[str, float] = {}
    for repeat in range(args.repeats):
        for config in configs if repeat % 2 == 0 else configs[::-1]:
            began = time.perf_counter()
            model = load_model(SPEC) if config == "local" else RayPool(SPEC, actors=int(config[-1]),
                                                                      num_cpus=args.actor_cpus)
            starts[config].append(time.perf_counter() - began)
            store = Store(home / f"{config}-{repeat}.db")  # a fresh store: every request is a miss
            try:
                began = time.perf_counter()
                summary = sit(exam, model, store, progress=False)
                times[config].append(time.perf_counter() - began)
                assert summary.model_calls == len(exam.items) and summary.cache_hits == 0
                answers[config] = [a.text for a, _ in store.answers(summary.run_id)]
                accuracy[config] = summary.accuracy
            finally:
                model.close()
                store.close()
            print(f"repeat {repeat} {config}: start {starts[config][-1]:.1f} s, "
                  f"{len(exam.items) / times[config][-1]:.2f} items/s", flush=True)

    n = len(exam.items)
    rate = {c: n * len(t) / sum(t) for c, t in times.items()}
    result = {
        "n": n, "shots": args.shots, "model": SPEC, "repeats": args.repeats, "actor_cpus": args.actor_cpus,
        "items_per_s": rate, "ratio_2_vs_1_actors": rate["ray-2"] / rate["ray-1"],
        **({"ratio_1_actor_vs_local": rate["ray-1"] / rate["local"]} if "local" in rate else {}),
        "sit_s": times, "start_s": starts, "ray_start_s": ray_start_s, "accuracy": accuracy,
        "same_answers_everywhere": all(a == answers["ray-1"] for a in answers.values()),
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version(), "load_avg_at_end": os.getloadavg()},
        "note": "one process, configurations one after another on a shared machine: read the ratio, not the "
                "absolute numbers",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{'':10}{'items/s':>10}{'start s':>10}")
    for c in configs:
        print(f"{c:10}{rate[c]:>10.2f}{sum(starts[c]) / len(starts[c]):>10.1f}")
    print(f"2 vs 1 actors: {result['ratio_2_vs_1_actors']:.2f}x; same answers everywhere: "
          f"{result['same_answers_everywhere']}; accuracy {accuracy}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
