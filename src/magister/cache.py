"""Ask a model through the store's response cache: the one path every model call takes."""

from __future__ import annotations

from magister.errors import BackendError
from magister.models.base import Model, cache_key
from magister.store import Store
from magister.types import Completion, Request


def ask(model: Model, store: Store, requests: list[Request]) -> tuple[list[str], list[Completion], int]:
    """Answer requests through the response cache: (cache keys, completions, cache hits).

    Misses go to the model in one batch and are stored in one transaction; if the batch
    fails part-way, what did finish is stored before the error propagates.
    """
    keys = [cache_key(model, r) for r in requests]
    completions = store.cached([k for k, r in zip(keys, requests) if r.cacheable])
    for completion in completions.values():
        completion.cached = True
    misses = [i for i, k in enumerate(keys) if k not in completions]
    todo = [(keys[i], requests[i]) for i in misses]
    try:
        fresh = model.generate([request for _, request in todo]) if todo else []
    except (BackendError, KeyboardInterrupt) as err:  # what did arrive is kept: a rerun will not ask again
        partial = getattr(err, "partial", None) or {}
        finished = [(todo[i][0], todo[i][1], c) for i, c in partial.items() if isinstance(c, Completion)]
        if finished:
            with store.transaction():
                store.put_responses(model.backend, model.identity(), finished)
        raise
    with store.transaction():  # a failed request (completion.error) is not cached: it is asked again next time
        store.put_responses(model.backend, model.identity(),
                            [(keys[i], requests[i], c) for i, c in zip(misses, fresh) if c.error is None])
    for i, completion in zip(misses, fresh):
        completions[keys[i]] = completion
    return keys, [completions[k] for k in keys], len(requests) - len(misses)
