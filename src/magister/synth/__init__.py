"""Synthetic data: what a teacher writes, and the filters it must pass before anyone trains on it.

    drafts.py         Draft (a new example and why it was rejected), as_item, reason_kind
    contamination.py  exact and long n-gram copies of exam items (not shared phrasing)
    dedupe.py         near-duplicates of the training data: ROUGE-L or embeddings
    verify.py         the verifier: checked on human labels against a bar, trusted, veto only, or not used
    write.py          `magister write`: a teacher writes an exam like a seed, filtered and verified

Used by `magister write` and the teaching loop alike; it imports from the layers below it (types,
models, store, cache, exams, graders, sit), never from `teach`, `web` or `cli`.
"""
