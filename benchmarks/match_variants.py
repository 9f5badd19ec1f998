"""What else might lift answer matching's calibrated kappa: cheap features, and a stricter match prompt.

On ../shared/data/judge/answer_matching_mmlu_pro.jsonl (match = mean human rating >= 4):

- `features` (no model, seconds): a held-out (5-fold) logistic calibration over the rules verdict
  and token F1, then with numeric agreement (numbers within 1%), character TF-IDF similarity and
  the length ratio added.
- `prompt` (the 1.5B judge, about 4 minutes for 200 rows): Magister's match prompt against one
  whose system turn also says that numbers agreeing to the reference's precision count as the
  same and that a reason given in the reference must be given too; raw (P(yes) >= 0.5) and
  calibrated (held out) kappa on the first `--rows` rows.
- `fewshot` (the 1.5B judge, about 6 minutes for 200 rows): the match prompt after `--shots`
  worked examples as earlier chat turns (half right, half wrong by the humans, drawn at random
  from rows 600 on, which the evaluation never reaches), so the examples are a cached prefix.

    python benchmarks/match_variants.py --part features
    python benchmarks/match_variants.py --part prompt --rows 200 --store /tmp/judges.db
    python benchmarks/match_variants.py --part prompt --start 200 --rows 600 --store /tmp/judges.db
    python benchmarks/match_variants.py --part fewshot --rows 200 --shots 8 --store /tmp/judges.db
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
PATH = ROOT.parent.parent / "shared" / "data" / "judge" / "answer_matching_mmlu_pro.jsonl"
STRICT = ("You check whether a response gives the same answer as a reference answer. Numbers that agree to the "
          "precision of the reference (within about 1%, after converting units) count as the same answer. When the "
          "reference gives a reason or condition that is part of its answer, the response must give the same one. "
          "Reply with yes or no only.")
_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")


def _numbers(text: str) -> list[float]:
    return [float(x.replace(",", "")) for x in _NUMBER.findall(text)]


def numeric(reference: str, response: str) -> list[float]:
    """Whether the reference has numbers, and the share of them the response gives within 1%."""
    ref, res = _numbers(reference), _numbers(response)
    if not ref:
        return [0.0, 0.0]
    if not res:
        return [1.0, 0.0]
    return [1.0, float(np.mean([min(abs(x - z) / max(abs(x), 1e-9) for z in res) <= 0.01 for x in ref]))]


def feature_kappas(rows: list[dict], humans: list[list[bool]], y: np.ndarray) -> dict[str, float]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    from magister.graders.deterministic import rules_match, token_f1
    from magister.judges.calibrate import heldout_verdicts
    from magister.judges.check import _agreement

    refs, responses = [r["reference"] for r in rows], [r["response"] for r in rows]
    tfidf = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4)).fit(refs + responses)
    similarity = np.asarray(tfidf.transform(refs).multiply(tfidf.transform(responses)).sum(axis=1)).ravel()
    base = np.array([[float(rules_match(a, b)), token_f1(a, b)] for a, b in zip(refs, responses)])
    extra = np.hstack([np.array([numeric(a, b) for a, b in zip(refs, responses)]), similarity[:, None],
                       np.array([[np.log1p(len(b)) - np.log1p(len(a))] for a, b in zip(refs, responses)])])
    out = {"rules": _agreement(base[:, 0].astype(bool).tolist(), humans)["kappa"]}
    for name, x in (("rules + token F1", base), ("+ numbers, TF-IDF, length", np.hstack([base, extra]))):
        out[name] = _agreement(heldout_verdicts("logistic", x, y).tolist(), humans)["kappa"]
    return out


def prompt_kappas(rows: list[dict], humans: list[list[bool]], y: np.ndarray, store_path: str | None,
                  shots: int = 0, pool: list[dict] | None = None) -> dict:
    import tempfile

    from magister.judges import Judge, prompts
    from magister.judges.calibrate import features, heldout_verdicts
    from magister.judges.check import _agreement
    from magister.models.llamacpp import LlamaCppModel
    from magister.store import Store
    from magister.types import Message

    sys.path.insert(0, str(ROOT))
    from offline_teacher import teacher_path

    model = LlamaCppModel(f"llamacpp:{teacher_path()}")
    store = Store(Path(store_path) if store_path else Path(tempfile.mkdtemp()) / "judges.db")
    judge = Judge(model, store)

    def right(r: dict) -> bool:
        return (r["human_1"] + r["human_2"]) / 2 >= 4

    def strict(r: dict) -> list[Message]:
        user = prompts.match(r["question"], r["reference"], r["response"])[1]
        return [Message(role="system", content=f"{STRICT} {prompts.HIERARCHY}"), user]

    rng = random.Random(0)
    examples = (rng.sample([r for r in pool or [] if right(r)], shots // 2) +
                rng.sample([r for r in pool or [] if (r["human_1"] + r["human_2"]) / 2 < 3], shots // 2))
    rng.shuffle(examples)

    def few(r: dict) -> list[Message]:
        system, user = prompts.match(r["question"], r["reference"], r["response"])
        turns = [system]
        for e in examples:
            turns += [prompts.match(e["question"], e["reference"], e["response"])[1],
                      Message(role="assistant", content="yes" if right(e) else "no")]
        return [*turns, user]

    ours = [p for p, _ in judge.yes_probabilities([prompts.match(r["question"], r["reference"], r["response"])
                                                   for r in rows])]
    other = ("strict", strict) if not shots else (f"{shots}_shot", few)
    variant = [p for p, _ in judge.yes_probabilities([other[1](r) for r in rows])]
    out = {}
    for name, p in (("magister", ours), (other[0], variant)):
        p = [0.5 if v is None else v for v in p]
        x = np.array([features(r["reference"], r["response"], v) for r, v in zip(rows, p)])
        out[name] = {"raw": _agreement([v >= 0.5 for v in p], humans)["kappa"],
                     "calibrated_heldout": _agreement(heldout_verdicts("logistic", x, y).tolist(), humans)["kappa"]}
    model.close()
    store.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("features", "prompt", "fewshot"), default="features")
    parser.add_argument("--shots", type=int, default=8, help="fewshot: worked examples (half right, half wrong)")
    parser.add_argument("--rows", type=int, default=None, help="only the first N rows")
    parser.add_argument("--start", type=int, default=0, help="prompt, fewshot: skip the first N rows (a check on "
                                                              "rows a variant was not chosen on)")
    parser.add_argument("--store", help="a store to cache the judge's calls in (resumable)")
    args = parser.parse_args()
    every = [json.loads(line) for line in PATH.open()]
    rows = every[args.start:min(args.rows or 600, 600)]  # rows 600 on are the few-shot pool
    humans = [[r["human_1"] >= 4 for r in rows], [r["human_2"] >= 4 for r in rows]]
    y = np.array([(r["human_1"] + r["human_2"]) / 2 >= 4 for r in rows])
    if args.part == "features":
        rows = every[:args.rows]
        humans = [[r["human_1"] >= 4 for r in rows], [r["human_2"] >= 4 for r in rows]]
        y = np.array([(r["human_1"] + r["human_2"]) / 2 >= 4 for r in rows])
        result = feature_kappas(rows, humans, y)
    else:
        result = prompt_kappas(rows, humans, y, args.store, args.shots if args.part == "fewshot" else 0, every[600:])
    print(json.dumps({"part": args.part, "rows": len(rows), "start": args.start, **result}, indent=1))


if __name__ == "__main__":
    main()
