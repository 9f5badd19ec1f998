"""Drop new examples too close to any example already held: ROUGE-L (as Self-Instruct) or embeddings.

Every draft (but a rationale for an existing item, from `explain`, and a `replay` copy) is compared
with all data so far (seed, earlier rounds, and the drafts of this round already kept), and
rejected with the nearest example's id and similarity.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from magister.synth.drafts import Draft


def rouge_similarity() -> Callable[[str, Sequence[str]], np.ndarray]:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    return lambda text, others: np.array([scorer.score(o, text)["rougeL"].fmeasure for o in others])


def embedding_similarity() -> Callable[[str, Sequence[str]], np.ndarray]:
    """Cosine similarity of the embedded SmolLM2's mean-pooled embeddings (llama.cpp)."""
    import llama_cpp

    from magister.models.llamacpp import embedded_path, new_llama

    llm = new_llama(model_path=str(embedded_path("smollm2")), embedding=True, n_ctx=512, n_batch=512,
                    n_ubatch=512, verbose=False, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN)
    memo: dict[str, np.ndarray] = {}

    def embed(text: str) -> np.ndarray:
        if text not in memo:
            vector = np.asarray(llm.embed(text[:2000] or "(empty)"), dtype=float)
            memo[text] = vector / (np.linalg.norm(vector) or 1.0)
        return memo[text]

    return lambda text, others: np.array([float(embed(text) @ embed(o)) for o in others])


def dedupe(drafts: list[Draft], existing: dict[str, str], method: str, threshold: float) -> int:
    """Mark drafts within `threshold` of an existing input (id -> text) or of an earlier draft; returns how many."""
    if method == "off":
        return 0
    similarity = rouge_similarity() if method == "rouge" else embedding_similarity()
    ids, texts = list(existing), list(existing.values())
    marked = 0
    for number, draft in enumerate(drafts):
        if draft.reason is not None or draft.rationale or draft.replay:  # these re-use their item's input on purpose
            continue
        if texts:
            scores = similarity(draft.input, texts)
            best = int(np.argmax(scores))
            if scores[best] >= threshold:
                draft.reason = f"duplicate of {ids[best]} ({method} {scores[best]:.2f})"
                marked += 1
                continue
        ids.append(f"draft {number}")
        texts.append(draft.input)
    return marked
