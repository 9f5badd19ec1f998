"""A model served by a pool of Ray actors: `magister exam ... --ray` (and `ray: true` in a teach config).

`RayPool(spec)` is a Model like any other: its `generate` splits a batch into one contiguous chunk
per actor, and each actor holds one backend that it built itself from the spec string (llama.cpp,
transformers, HTTP: whatever the spec names; a loaded model is never pickled). Because the pool is
only a Model, `sit()` has no Ray code: the driver alone reads and writes the store (the response
cache, answers, leases, resume), one transaction per batch, exactly as in a local run. The pool
takes its backend name and identity from the actors, so cache keys and run fingerprints are those
of the backend itself: a local run's cache answers a Ray run, and either resumes the other.

A batch is the backend's `batch_size` times the number of actors. An actor that dies mid-batch
(`RayActorError`: killed, out of memory, its node lost) is replaced by a fresh one and its chunk
sent again; nothing is stored until the batch is back, so no item is lost, and the cache means
that nothing already stored is ever asked again. A driver killed mid-run takes its actors with it,
and the same command resumes.

Ray is imported when a pool is made (`magister --help` never loads it): a local Ray is started,
unless RAY_ADDRESS names a cluster to join.
"""

from __future__ import annotations

import logging
import math
import os
import socket
from collections.abc import Sequence
from typing import Any

from magister.errors import BackendError, ConfigError, MagisterError
from magister.models.base import Model, load_model
from magister.types import Completion, Request

INSTALL = "sitting on Ray needs ray: pip install 'magister[ray]'"


def connect(num_cpus: float = 1.0) -> Any:
    """The `ray` module, connected: to the cluster RAY_ADDRESS names, else to a local Ray started here with
    at least `num_cpus` CPUs (a Ray already started in this process is used as it is)."""
    try:
        import ray
    except ImportError:
        raise ConfigError(INSTALL) from None
    if not ray.is_initialized():
        quiet = {"log_to_driver": False, "logging_level": logging.WARNING}  # `--json` keeps a clean stdout
        if os.environ.get("RAY_ADDRESS"):
            ray.init(**quiet)
        else:
            ray.init(num_cpus=max(os.cpu_count() or 1, math.ceil(num_cpus)), include_dashboard=False, **quiet)
    return ray


class Backend:
    """What runs inside one actor: the model its spec names, loaded in the actor's own process."""

    def __init__(self, spec: str) -> None:
        self.model: Model | None = None
        self.error: MagisterError | None = None
        try:
            self.model = load_model(spec)
        except MagisterError as error:  # sent back whole by `describe`, so the driver raises what a local run would
            self.error = error

    def describe(self) -> dict[str, Any]:
        if self.model is None:
            return {"error": self.error}
        m = self.model
        return {"backend": m.backend, "identity": m.identity(), "supports_choices": m.supports_choices,
                "supports_logprobs": m.supports_logprobs, "batch_size": m.batch_size,
                "host": socket.gethostname(), "pid": os.getpid(), "threads": os.environ.get("MAGISTER_THREADS")}

    def generate(self, requests: list[Request]) -> tuple[list[Completion] | None, MagisterError | None]:
        assert self.model is not None
        try:
            return self.model.generate(requests), None
        except MagisterError as error:  # a backend error travels as a value, its `partial` with it
            return None, error


class RayPool(Model):
    """`actors` copies of the model `spec` names, each in a Ray actor holding `num_cpus` CPUs (fractional is
    fine); `options` go to the actors as they are (e.g. num_gpus=1). A chunk whose actor dies is sent again
    up to `retries` times, each time to a fresh actor."""

    def __init__(self, spec: str, actors: int = 2, num_cpus: float = 0.5, *, retries: int = 3,
                 start_timeout_s: float = 600.0, **options: Any) -> None:
        if actors < 1:
            raise ConfigError(f"--actors must be at least 1, not {actors}")
        if num_cpus <= 0:
            raise ConfigError(f"each Ray actor needs some CPU: --actor-cpus must be above 0, not {num_cpus}")
        super().__init__(spec)
        self.ray = connect(actors * num_cpus)
        self._spec = spec  # the spec as given (credentials too): only the actors see it
        self.retries, self.start_timeout_s = retries, start_timeout_s
        # each backend computes with as many threads as its actor has CPUs (at least one), not with every core
        env = {"env_vars": {"MAGISTER_THREADS": str(max(1, math.floor(num_cpus)))}}
        self._actor_class = self.ray.remote(Backend).options(num_cpus=num_cpus, max_restarts=0,
                                                             runtime_env=options.pop("runtime_env", env), **options)
        self.actors: list[Any] = []
        self.sent = 0  # requests handed to actors, chunks sent again included
        self.replaced = 0  # actors that died and were replaced
        try:
            self.actors = [self._actor_class.remote(spec) for _ in range(actors)]
            described = self._describe(self.actors)
        except BaseException:
            self.close()
            raise
        first = described[0]
        self.backend, self._identity = first["backend"], first["identity"]
        self.supports_choices, self.supports_logprobs = first["supports_choices"], first["supports_logprobs"]
        self.batch_size = first["batch_size"] * actors
        self.hosts = sorted({d["host"] for d in described})
        self.threads = [d["threads"] for d in described]  # MAGISTER_THREADS inside each actor

    def identity(self) -> str:
        return self._identity

    def _describe(self, actors: list[Any]) -> list[dict[str, Any]]:
        """Each actor's model, once loaded; its load error raised here as it would be in a local run."""
        from ray.exceptions import GetTimeoutError, RayActorError

        try:
            described = self.ray.get([a.describe.remote() for a in actors], timeout=self.start_timeout_s)
        except GetTimeoutError:
            raise BackendError(f"the Ray actors for {self.spec} did not start within {self.start_timeout_s:.0f} s: "
                               "does the cluster have the CPUs they ask for free (`ray status`)?") from None
        except RayActorError as error:
            raise BackendError(f"a Ray actor for {self.spec} died while loading the model: "
                               f"{str(error).strip().splitlines()[-1][:300]}") from None
        for d in described:
            if d.get("error") is not None:
                raise d["error"]
        if any(d["identity"] != described[0]["identity"] or d["backend"] != described[0]["backend"]
               for d in described) or getattr(self, "_identity", described[0]["identity"]) != described[0]["identity"]:
            raise BackendError(f"the Ray actors for {self.spec} loaded different models ("
                               f"{sorted({d['identity'] for d in described})}): give every node the same weights")
        return described

    def _send(self, slot: int, chunk: list[Request]) -> Any:
        self.sent += len(chunk)
        return self.actors[slot].generate.remote(chunk)

    def _replace(self, slot: int) -> None:
        try:
            self.ray.kill(self.actors[slot])
        except Exception:  # noqa: BLE001 - already gone
            pass
        fresh = self._actor_class.remote(self._spec)
        self.actors[slot] = fresh
        self._describe([fresh])
        self.replaced += 1

    def generate(self, requests: Sequence[Request]) -> list[Completion]:
        from ray.exceptions import RayActorError, WorkerCrashedError

        requests = list(requests)
        if not requests:
            return []
        if not self.actors:
            raise BackendError(f"the Ray pool for {self.spec} is closed")
        size = math.ceil(len(requests) / len(self.actors))
        out: list[Completion | None] = [None] * len(requests)
        pending = {self._send(slot, requests[start:start + size]): (slot, start, 0)
                   for slot, start in enumerate(range(0, len(requests), size))}
        failure: MagisterError | None = None
        try:
            while pending:
                [ref], _ = self.ray.wait(list(pending), num_returns=1)
                slot, start, tries = pending.pop(ref)
                chunk = requests[start:start + size]
                try:
                    completions, error = self.ray.get(ref)
                except (RayActorError, WorkerCrashedError) as died:
                    if tries >= self.retries:
                        failure = failure or BackendError(f"a Ray actor for {self.spec} died {tries + 1} times on the "
                                                          f"same batch; last: {str(died).strip()[:300]}")
                        continue
                    try:
                        self._replace(slot)
                    except MagisterError as error:
                        failure = failure or error
                        continue
                    pending[self._send(slot, chunk)] = (slot, start, tries + 1)
                    continue
                if error is not None:
                    failure = failure or error
                    for i, completion in (getattr(error, "partial", None) or {}).items():
                        out[start + i] = completion
                    continue
                out[start:start + len(chunk)] = completions
        except KeyboardInterrupt as interrupt:  # `ask` stores the chunks that did come back
            interrupt.partial = {i: c for i, c in enumerate(out) if c is not None}  # type: ignore[attr-defined]
            raise
        if failure is not None:
            failure.partial = {i: c for i, c in enumerate(out) if c is not None}  # type: ignore[attr-defined]
            raise failure
        return out  # type: ignore[return-value]

    def close(self) -> None:
        """Stop the actors (the Ray this process started stops when it exits)."""
        actors, self.actors = self.actors, []
        for actor in actors:
            try:
                self.ray.kill(actor)
            except Exception:  # noqa: BLE001 - already gone, or Ray shut down
                pass
