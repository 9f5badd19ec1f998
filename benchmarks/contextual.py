"""Benchmark: contextual calibration of constrained choice (Zhao et al. 2021) on the embedded model.

SmolLM2-135M-Instruct, scored by constrained choice, before and after dividing out its answer
prior measured on content-free inputs ("N/A", "", "[MASK]"):
- the demo exam shipped with Magister (44 items; 24 sentiment, 12 multiple choice, 8 sums),
  with its worked examples;
- TREC's 500-item test set with 12 class-balanced worked examples from train.jsonl.
Per kind (and, for TREC, per label) accuracy and how often each answer is given.

    python benchmarks/contextual.py          # about 4 minutes on 2 CPU cores (needs ../shared/data/trec)
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from collections import Counter
from importlib import resources
from pathlib import Path

from magister.exams.load import load_exam, pick_fewshot
from magister.models.base import load_model
from magister.sit import sit
from magister.store import Store

ROOT = Path(__file__).resolve().parent
DATA = ROOT.parent.parent / "shared" / "data" / "trec"


def measure(exam, model, store: Store, calibrate: bool) -> dict:  # noqa: ANN001
    started = time.perf_counter()
    summary = sit(exam, model, store, calibrate_choices=calibrate, progress=False)
    items = {i.id: i for i in exam.items}
    graded = store.answers(summary.run_id)
    by_kind: dict[str, list[bool]] = {}
    for answer, grade in graded:
        by_kind.setdefault(items[answer.item_id].kind.value, []).append(bool(grade.correct))
    labels = [a.text for a, _ in graded if items[a.item_id].kind.value == "classification"]
    return {"accuracy": summary.accuracy, "ci_low": summary.ci_low, "ci_high": summary.ci_high, "n": summary.n,
            "by_kind": {k: sum(v) / len(v) for k, v in by_kind.items()}, "answers_given": dict(Counter(labels)),
            "wall_s": time.perf_counter() - started}


def main() -> None:
    store = Store(Path(tempfile.mkdtemp(prefix="contextual-")) / "bench.db")
    model = load_model("llamacpp:smollm2")
    data = resources.files("magister") / "data"
    with resources.as_file(data / "demo.jsonl") as items, resources.as_file(data / "demo_fewshot.jsonl") as shots:
        demo = load_exam(items, name="demo")
        demo.fewshot = load_exam(shots).items
    trec = load_exam(DATA / "test.jsonl", name="trec-test")
    trec.fewshot = pick_fewshot(load_exam(DATA / "train.jsonl").items, 12)
    result: dict = {}
    try:
        for name, exam in (("demo", demo), ("trec", trec)):
            result[name] = {"plain": measure(exam, model, store, False),
                            "calibrated": measure(exam, model, store, True)}
    finally:
        model.close()
    result["settings"] = {"model": "llamacpp:smollm2", "content_free": ["N/A", "", "[MASK]"],
                          "machine": f"{platform.machine()}, {os.cpu_count()} cores"}
    out = ROOT / "results" / "contextual.json"
    out.write_text(json.dumps(result, indent=2))
    for name in ("demo", "trec"):
        for mode in ("plain", "calibrated"):
            r = result[name][mode]
            kinds = ", ".join(f"{k} {v:.0%}" for k, v in r["by_kind"].items())
            print(f"{name:<5} {mode:<10} {r['accuracy']:.1%} [{r['ci_low']:.1%}-{r['ci_high']:.1%}]  {kinds}  "
                  f"answers: {r['answers_given']}")


if __name__ == "__main__":
    main()
