"""Exam throughput: Magister against a plain llama-cpp-python loop, and the fully cached re-run.

The 500-item TREC test set is a classification exam (6 labels) with a 12-shot, class-balanced
prompt drawn from TREC train, answered by constrained choice on `llamacpp:smollm2`. Both sides
send the same messages and score the same candidates the same way, on the same weights (the
float32 copy that the backend scores choices with):

- Magister: `sit()` with a fresh store, so every request is a cache miss, stored and graded.
- plain: a loop over llama-cpp-python with no Magister in between (chat template, tokenize,
  longest-prefix re-use of the key-value cache as `Llama.generate` does, log-softmax of each
  label's tokens).

They alternate over chunks of the exam, in the same process, each with its own `Llama`, the
order flipped every chunk so drift on the machine falls on both. Then Magister sits the whole
exam again: every answer comes from the cache.

    python benchmarks/exam_throughput.py [--limit 500] [--chunk 100] [--shots 12]

Writes benchmarks/results/exam_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TREC = ROOT.parent / "shared" / "data" / "trec"


def plain_loop(llm, formatter, requests) -> list[str]:  # noqa: ANN001
    """What a user of llama-cpp-python would write: the same scoring, no store, no cache, no grading."""
    import llama_cpp

    answers = []
    for request in requests:
        prompt = formatter(messages=[m.model_dump() for m in request.messages]).prompt
        tokens = llm.tokenize(prompt.encode(), add_bos=False, special=True)
        keep, limit = 0, min(llm.n_tokens, len(tokens) - 1)
        while keep < limit and llm.input_ids[keep] == tokens[keep]:
            keep += 1
        llm.n_tokens = keep
        llm.eval(tokens[keep:])
        n_prompt, n_vocab = len(tokens), llm.n_vocab()

        def logprobs() -> np.ndarray:
            row = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,)).copy()
            top = row.max()
            return row - top - np.log(np.exp(row - top).sum())

        first = logprobs()
        scores = {}
        for label in request.choices:
            ids = llm.tokenize(label.encode(), add_bos=False)
            total = float(first[ids[0]])
            llm.n_tokens = n_prompt
            for previous, token in zip(ids, ids[1:]):
                llm.eval([previous])
                total += float(logprobs()[token])
            scores[label] = total
        llm.n_tokens = n_prompt
        answers.append(max(scores, key=scores.get))
    return answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--chunk", type=int, default=100)
    parser.add_argument("--shots", type=int, default=12)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "exam_throughput.json")
    args = parser.parse_args()

    os.environ["MAGISTER_HOME"] = tempfile.mkdtemp(prefix="magister-bench-")
    from magister.models.llamacpp import new_llama
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    from magister.exams.load import load_exam, pick_fewshot
    from magister.exams.prompt import build_request
    from magister.models.base import load_model
    from magister.sit import sit
    from magister.store import Store

    exam = load_exam(TREC / "test.jsonl", limit=args.limit, name="trec-test")
    exam.fewshot = pick_fewshot(load_exam(TREC / "train.jsonl").items, args.shots, seed=0)
    store = Store()
    model = load_model("llamacpp:smollm2")
    plain = new_llama(model_path=str(model.choice_path), n_ctx=4096, n_threads=os.cpu_count(), n_batch=512,
                      logits_all=False, verbose=False)  # the same weights and llama.cpp parameters as the backend
    template = plain.metadata["tokenizer.chat_template"]
    eos = plain.detokenize([plain.token_eos()], special=True).decode()
    formatter = Jinja2ChatFormatter(template=template, eos_token=eos,
                                    bos_token=plain.detokenize([plain.token_bos()], special=True).decode())

    times = {"magister": 0.0, "plain": 0.0}
    agree = 0
    for index, start in enumerate(range(0, len(exam.items), args.chunk)):
        chunk = exam.model_copy(update={"items": exam.items[start:start + args.chunk],
                                        "name": f"trec-test-{start}"})
        requests = [build_request(item, chunk, use_choices=True) for item in chunk.items]
        order = ["plain", "magister"] if index % 2 == 0 else ["magister", "plain"]
        for side in order:
            began = time.perf_counter()
            if side == "plain":
                plain_answers = plain_loop(plain, formatter, requests)
            else:
                summary = sit(chunk, model, store, progress=False)
            times[side] += time.perf_counter() - began
        magister_answers = [a.text for a, _ in store.answers(summary.run_id)]
        agree += sum(p == m for p, m in zip(plain_answers, magister_answers))
        print(f"chunk {index}: {len(chunk.items)} items, plain {times['plain']:.1f} s, "
              f"magister {times['magister']:.1f} s so far", flush=True)

    began = time.perf_counter()
    cached = sit(exam, model, store, progress=False)
    cached_s = time.perf_counter() - began
    assert cached.cache_hits == len(exam.items) and cached.model_calls == 0

    n = len(exam.items)
    result = {
        "n": n, "shots": args.shots, "chunk": args.chunk, "model": "llamacpp:smollm2",
        "magister_items_per_s": n / times["magister"], "plain_items_per_s": n / times["plain"],
        "ratio": times["plain"] / times["magister"],
        "first_run_s": times["magister"], "cached_run_s": cached_s, "cached_speedup": times["magister"] / cached_s,
        "accuracy": cached.accuracy, "ci_low": cached.ci_low, "ci_high": cached.ci_high,
        "answers_agreeing_with_plain": agree / n,
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{'':24}{'items/s':>10}")
    print(f"{'plain llama-cpp-python':24}{result['plain_items_per_s']:>10.2f}")
    print(f"{'magister':24}{result['magister_items_per_s']:>10.2f}")
    print(f"ratio (goal >= 0.95): {result['ratio']:.3f}")
    print(f"cached re-run: {cached_s:.2f} s for {n} items, {result['cached_speedup']:.0f}x faster (goal >= 50x)")
    print(f"accuracy {cached.accuracy:.1%} (95% CI {cached.ci_low:.1%}-{cached.ci_high:.1%}); "
          f"answers agreeing with plain: {result['answers_agreeing_with_plain']:.1%}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
