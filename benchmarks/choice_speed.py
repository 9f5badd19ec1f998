"""Scoring a closed answer set whose labels are several tokens each: items/s per backend.

The teaching loop's hot path: every round's student, and every fold student, sits a
constrained-choice exam through `hf:`. The task is a 7-intent exam in the style of SNIPS
(`PlayMusic`, `SearchScreeningEvent`, ...: every label is several tokens), 40 utterances written
here, sat by SmolLM2-135M-Instruct through both backends with a fresh store (every request a
cache miss):

- `llamacpp:smollm2`: the prompt's last segment and every candidate in one decode call, the candidates
  as sequences sharing the prompt's key/value cells, on the float32 copy of the weights it scores
  choices with;
- `llamacpp:smollm2 (Q4_1 weights)`: the same on the quantised file itself (what it scored on before);
- `hf:smollm2`: the prompt once, the candidates together on its key/value cache (`past_key_values`);
- `hf (one sequence per candidate)`: the transformers scoring Magister used before, a full forward of
  prompt + candidate per multi-token candidate with a log-softmax over the whole vocabulary at every
  position, run here from this file as the baseline; its scores are checked against the new path's.

Both backends now score the same float32 weights: the largest difference between their
log-probabilities, and whether they pick the same answers, are reported too.

    python benchmarks/choice_speed.py [--repeat 3]

Writes benchmarks/results/choice_speed.json. Timings are ratios measured in one run.
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
QUANTISED = "llamacpp:smollm2 (Q4_1 weights)"
LABELS = ["AddToPlaylist", "BookRestaurant", "GetWeather", "PlayMusic", "RateBook", "SearchCreativeWork",
          "SearchScreeningEvent"]
UTTERANCES = {
    "AddToPlaylist": ["add this song to my road trip playlist", "put Yesterday on my chill list",
                      "add the new Adele track to workout mix", "save this tune to my favourites playlist",
                      "include Bohemian Rhapsody in my party playlist", "add some jazz to my evening list"],
    "BookRestaurant": ["book a table for four at an Italian place tonight", "reserve a restaurant for two at 8 pm",
                       "I need a table at a sushi bar on Friday", "book dinner for six near the station",
                       "get me a reservation at a steakhouse tomorrow", "find and book a vegan cafe for lunch"],
    "GetWeather": ["will it rain in Paris tomorrow", "what is the forecast for Boston this weekend",
                   "how cold will it be tonight", "is it sunny in Madrid right now",
                   "weather for Tokyo on Monday", "do I need an umbrella today"],
    "PlayMusic": ["play some Beatles", "put on relaxing piano music", "play the latest album by Drake",
                  "start my morning playlist", "play a song by Queen", "I want to hear some classical music"],
    "RateBook": ["give this novel five stars", "rate The Hobbit four out of six", "I rate this book a three",
                 "give Dune two points", "rate the current textbook five stars", "mark this novel as one star"],
    "SearchCreativeWork": ["find the movie The Matrix", "look up the TV show Friends",
                           "search for the painting Starry Night", "find the game called Zelda",
                           "show me the book Moby Dick", "I am looking for the album Thriller"],
    "SearchScreeningEvent": ["what movies are playing at the cinema tonight", "find showtimes for Dune nearby",
                             "when is Barbie showing at the mall theatre", "which films are on this afternoon",
                             "movie schedule at the closest cinema", "is Oppenheimer playing anywhere today"],
}


def exam():  # noqa: ANN201
    from magister.types import Exam, Item, Kind

    items = [Item(id=f"{label}-{n}", input=text, reference=label, kind=Kind.classification, labels=LABELS)
             for label, texts in UTTERANCES.items() for n, text in enumerate(texts)]
    items = sorted(items, key=lambda i: (int(i.id.rsplit("-", 1)[1]), i.id))[:40]
    return Exam(name="intents-40", items=items, instructions="Classify the user's request into one intent.")


def old_scores(model, requests) -> list[dict[str, float]]:  # noqa: ANN001
    """The former transformers scoring: one padded row per multi-token candidate, full-vocabulary log-softmax."""
    torch = model.torch
    out = []
    for request in requests:
        prompt = model._encode([model.format(request)])[0]
        rows = [(c, model.tokenizer(c, add_special_tokens=False)["input_ids"]) for c in request.choices]
        pad = model.tokenizer.pad_token_id
        width = max(len(prompt) + len(t) for _, t in rows)
        ids = torch.tensor([prompt + t + [pad] * (width - len(prompt) - len(t)) for _, t in rows])
        mask = torch.tensor([[1] * (len(prompt) + len(t)) + [0] * (width - len(prompt) - len(t)) for _, t in rows])
        with torch.no_grad():
            logprobs = torch.log_softmax(model.model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
        out.append({c: float(sum(logprobs[r, len(prompt) - 1 + j, tok] for j, tok in enumerate(t)))
                    for r, (c, t) in enumerate(rows)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="timed passes per backend (the best is reported)")
    args = parser.parse_args()
    from magister.exams.prompt import build_request
    from magister.models.base import load_model
    from magister.sit import sit
    from magister.store import Store

    from magister.models.llamacpp import LlamaCppModel

    the_exam = exam()
    requests = [build_request(i, the_exam, use_choices=True) for i in the_exam.items]
    result: dict = {"items": len(the_exam.items), "labels": LABELS, "runs": {}}
    scores: dict[str, list[dict[str, float]]] = {}
    for spec in (QUANTISED, "llamacpp:smollm2", "hf:smollm2"):
        model = LlamaCppModel("llamacpp:smollm2", float_choices=False) if spec == QUANTISED else load_model(spec)
        best = None
        for attempt in range(args.repeat):
            with tempfile.TemporaryDirectory() as tmp:
                started = time.perf_counter()
                summary = sit(the_exam, model, Store(Path(tmp) / "s.db"), progress=False)
                wall = time.perf_counter() - started
            best = wall if best is None else min(best, wall)
            result["runs"].setdefault(spec, []).append(wall)
        result[spec] = {"items_per_s": len(the_exam.items) / best, "accuracy": summary.accuracy}
        scores[spec] = new = [c.choice_logprobs for c in model.generate(requests)]
        if spec.startswith("hf:"):
            walls = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                old = old_scores(model, requests)
                walls.append(time.perf_counter() - started)
            gap = max(abs(o[c] - n[c]) for o, n in zip(old, new) for c in o)
            result["hf_one_sequence_per_candidate"] = {"items_per_s": len(requests) / min(walls),
                                                       "max_abs_logprob_difference": gap,
                                                       "same_answers": all(max(o, key=o.get) == max(n, key=n.get)
                                                                           for o, n in zip(old, new))}
            result["runs"]["hf_one_sequence_per_candidate"] = walls
        model.close()
    result["hf_speedup_over_old"] = result["hf:smollm2"]["items_per_s"] / \
        result["hf_one_sequence_per_candidate"]["items_per_s"]
    result["hf_vs_llamacpp"] = result["hf:smollm2"]["items_per_s"] / result["llamacpp:smollm2"]["items_per_s"]
    result["llamacpp_float_over_quantised"] = result["llamacpp:smollm2"]["items_per_s"] / \
        result[QUANTISED]["items_per_s"]
    for spec in (QUANTISED, "llamacpp:smollm2"):  # how far each llama.cpp path is from transformers' scores
        pairs = list(zip(scores[spec], scores["hf:smollm2"]))
        result[spec]["vs_hf"] = {"max_abs_logprob_difference": max(abs(a[c] - b[c]) for a, b in pairs for c in a),
                                 "same_answers": sum(max(a, key=a.get) == max(b, key=b.get) for a, b in pairs)}
    result["machine"] = {"cpus": os.cpu_count(), "processor": platform.machine(), "python": platform.python_version()}
    out = ROOT / "benchmarks" / "results" / "choice_speed.json"
    out.write_text(json.dumps(result, indent=2))
    for key in (QUANTISED, "llamacpp:smollm2", "hf:smollm2", "hf_one_sequence_per_candidate"):
        agree = result[key].get("vs_hf")
        print(f"{key:<32} {result[key]['items_per_s']:6.1f} items/s" + (
            f"   vs hf: max |logprob difference| {agree['max_abs_logprob_difference']:.3f}, "
            f"same answers {agree['same_answers']}/{len(requests)}" if agree else ""))
    print(f"hf new/old {result['hf_speedup_over_old']:.1f}x, hf/llamacpp {result['hf_vs_llamacpp']:.2f}x, "
          f"llamacpp float32/Q4_1 {result['llamacpp_float_over_quantised']:.2f}x, max |logprob difference| "
          f"{result['hf_one_sequence_per_candidate']['max_abs_logprob_difference']:.2e}")


if __name__ == "__main__":
    main()
