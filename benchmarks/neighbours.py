"""Benchmark: `verify: neighbours`, the cheap verifier calibrated on people, on the teaching benchmark's seeds.

For TREC and SST-2 (../shared/data), the 100-item class-balanced seed of `teach_trec.py`: the k seed items
nearest each seed item (leave-one-out) in the embedded SmolLM2's embedding space vote for its label, as the
teaching loop checks the verifier (`check_verifier`, bar: 0.69, TREC's out-of-fold student); then the same
neighbours label 300 other human-labelled training items. No model call but the embeddings.

    python benchmarks/neighbours.py            # about 5 minutes on 2 cores
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import teach_trec  # noqa: E402

from magister.synth.dedupe import embedding_similarity  # noqa: E402
from magister.synth.verify import Neighbours, check_verifier  # noqa: E402
from magister.types import Item, Kind  # noqa: E402

ROOT = Path(__file__).resolve().parent
BAR = 0.69  # TREC's out-of-fold student on this seed (benchmarks/results/teach_trec.json, training seed 0)


def items(rows: list[dict], labels: list[str]) -> list[Item]:
    return [Item(id=r["id"], input=r["text"], reference=r["label"], kind=Kind.classification, labels=labels)
            for r in rows]


def main() -> None:
    similarity = embedding_similarity()  # one model and one embedding memo for every k
    result: dict = {"bar": BAR, "embedding": "SmolLM2-135M-Instruct (embedded GGUF), mean-pooled, cosine"}
    for task in ("trec", "sst2"):
        teach_trec.DATA = teach_trec.SHARED / task
        seed_rows = teach_trec.balanced_seed(100, 0)
        rows = [json.loads(line) for line in (teach_trec.DATA / "train.jsonl").read_text().splitlines()]
        labels = sorted({r["label"] for r in rows})
        chosen = {r["id"] for r in seed_rows}
        held = [r for r in rows if r["id"] not in chosen]
        random.Random(1).shuffle(held)
        seed, others = items(seed_rows, labels), items(held[:300], labels)
        majority = max(sum(i.reference == label for i in others) for label in labels) / len(others)
        result[task] = {"seed": len(seed), "held_out": len(others), "held_out_majority": majority, "by_k": {}}
        for k in (1, 5, 10):
            started = time.perf_counter()
            near = Neighbours(seed, similarity=similarity, k=k)
            check = check_verifier(near, None, seed, [], bar=BAR)  # type: ignore[arg-type]  # no store needed
            right = 0
            for item in others:
                scores = near.scores(item.input)
                right += max(scores, key=lambda label: scores[label]) == item.reference
            row = {"leave_one_out": check.accuracy, "ci_low": check.ci_low, "role": check.role,
                   "veto_at": check.veto_at, "held_out": right / len(others), "wall_s": time.perf_counter() - started}
            result[task]["by_k"][str(k)] = row
            print(task, k, json.dumps(row), flush=True)
    out = ROOT / "results" / "neighbours.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
