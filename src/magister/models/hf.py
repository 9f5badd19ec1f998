"""Local transformers models: a model directory (a trained student) or a GGUF file, batched.

Specs:
  hf:./runs/trec/round-2         a directory with config.json, weights and tokenizer
  hf:/path/model.gguf            a GGUF file, de-quantised to float by transformers
  hf:smollm2                     the embedded SmolLM2 GGUF, through transformers

Runs on a GPU when one is present, else on the CPU. Generation pads on the left and runs a
batch in one `generate` call; constrained choice scoring evaluates each prompt and all its candidates
in one forward pass (the candidates as branches of a tree on the prompt), summing the candidate tokens'
log-probabilities.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from magister.errors import BackendError, ConfigError
from magister.models.base import Model, threads
from magister.types import Completion, Request


def _identity(path: Path) -> str:
    """Where the model lives, and the name, size and modification time (ns) of every file in it.

    Two round directories trained within the same second must not share cache entries, so
    the resolved path and nanosecond times are part of it."""
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
    digest = hashlib.sha256(str(path.resolve()).encode())
    for file in files:
        stat = file.stat()
        digest.update(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return f"{path.name}:{digest.hexdigest()[:16]}"


class HFModel(Model):
    backend = "hf"
    supports_choices = True
    supports_logprobs = False
    batch_size = 8

    def __init__(self, spec: str, device: str | None = None) -> None:
        super().__init__(spec)
        try:
            import torch
            import transformers
        except ImportError:
            raise BackendError("the hf backend needs torch and transformers: pip install 'magister[hf]'") from None
        self.torch = torch
        if os.environ.get("MAGISTER_THREADS"):  # set by a Ray actor for its share of the CPUs (torch's own default else)
            torch.set_num_threads(threads())
        transformers.utils.logging.disable_progress_bar()  # no per-load weight bars: sit() shows progress
        name = spec.partition(":")[2]
        if name == "smollm2":
            from magister.models.llamacpp import embedded_path

            self.path = embedded_path(name)
        else:
            self.path = Path(name).expanduser()
        if not self.path.exists():
            raise ConfigError(f"no model directory or GGUF file at '{name}'")
        if self.path.is_file():
            where, extra = str(self.path.parent), {"gguf_file": self.path.name}
        else:
            where, extra = str(self.path), {}
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(where, **extra)
            self.model = transformers.AutoModelForCausalLM.from_pretrained(where, dtype=dtype, **extra)
        except (OSError, ValueError) as err:
            raise BackendError(f"cannot load a transformers model from '{name}': {err}") from None
        self.model.to(self.device).eval()
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if self.device == "cuda":
            self.batch_size = 32
        self._identity = _identity(self.path)
        # The LM head runs only on the rows that are read, where the model's forward can be told which.
        parameters = inspect.signature(self.model.forward).parameters
        self._keeps_logits = "logits_to_keep" in parameters
        self._cache_arg = "cache" if "cache" in parameters else "past_key_values"  # transformers 5.x renamed it
        # A model that attends within a sliding window (Mistral, Gemma's local layers): a custom mask would
        # replace the window, so prompts longer than it are scored one full sequence per candidate.
        config = self.model.config
        window = getattr(config, "sliding_window", None) if getattr(config, "use_sliding_window", True) else None
        self._window = window if isinstance(window, int) and window > 0 else None
        self._head_tokens: dict[str, list[int]] = {}  # the shared turns of the last exam scored, tokenised
        self._head_kv: tuple[tuple[int, ...], Any] | None = None  # ... and their key/value cache

    def identity(self) -> str:
        return self._identity

    def format(self, request: Request) -> str:
        if request.prompt is not None:
            return request.prompt
        if not self.tokenizer.chat_template:
            raise BackendError(f"{self.path} has no chat template; send a raw prompt instead")
        return self.tokenizer.apply_chat_template([m.model_dump() for m in request.messages or []],
                                                  tokenize=False, add_generation_prompt=True)

    def generate(self, requests: Sequence[Request]) -> list[Completion]:
        out: dict[int, Completion] = {}
        scoring = [i for i, r in enumerate(requests) if r.choices]
        writing = [i for i, r in enumerate(requests) if not r.choices]
        if scoring:
            out.update(zip(scoring, self._score([requests[i] for i in scoring])))
        # Requests decoded the same way share a generate() call.
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i in writing:
            r = requests[i]
            groups.setdefault((r.temperature, r.seed, tuple(r.stop)), []).append(i)
        for indices in groups.values():
            out.update(zip(indices, self._generate([requests[i] for i in indices])))
        return [out[i] for i in range(len(requests))]

    def _encode(self, texts: list[str]) -> list[list[int]]:
        return [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]

    def _generate(self, requests: list[Request]) -> list[Completion]:
        torch = self.torch
        start = time.perf_counter()
        first = requests[0]
        encoded = self._encode([self.format(r) for r in requests])
        width = max(len(e) for e in encoded)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded], device=self.device)
        mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded], device=self.device)
        sample = first.temperature > 0
        if sample and first.seed is not None:
            torch.manual_seed(first.seed)
        with torch.no_grad():
            result = self.model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=max(r.max_tokens for r in requests),
                do_sample=sample, temperature=first.temperature if sample else None, top_p=None, top_k=None,
                pad_token_id=pad, stop_strings=first.stop or None, tokenizer=self.tokenizer if first.stop else None)
        elapsed = time.perf_counter() - start
        completions = []
        eos = {self.tokenizer.eos_token_id, pad} - {None}
        for request, prompt, row in zip(requests, encoded, result[:, width:].tolist()):
            new = row[: request.max_tokens]
            finish = "length"
            for j, token in enumerate(new):
                if token in eos:
                    new, finish = new[:j], "stop"
                    break
            text = self.tokenizer.decode(new, skip_special_tokens=True)
            for stop in request.stop:
                if stop in text:
                    text, finish = text[: text.index(stop)], "stop"
            completions.append(Completion(text=text, prompt_tokens=len(prompt), completion_tokens=len(new),
                                          latency_s=elapsed / len(requests), finish_reason=finish))
        return completions

    def _score(self, requests: list[Request]) -> list[Completion]:
        """Log-probability of every candidate of every request: the prompt evaluated once, the candidates together.

        Each request runs alone (so its scores do not depend on the other requests of the batch), in one
        forward pass that holds the item's own tokens and all its candidates' tokens (`_score_one`).

        The turns before the last (the system turn with the instructions and labels, the few-shot turns) are
        the same for every item of an exam: their cache is computed once and copied for each item, which then
        runs only its own question. The split is a function of the request alone, so an item's scores never
        depend on which items came before it.
        """
        torch = self.torch
        start = time.perf_counter()
        prompts = self._encode([self.format(r) for r in requests])
        with torch.no_grad():
            scores = [self._score_one(prompt, list(request.choices or []), self._head_length(request, prompt))
                      for request, prompt in zip(requests, prompts)]
        elapsed = time.perf_counter() - start
        return [Completion(text=max(s, key=s.__getitem__), choice_logprobs=s, prompt_tokens=len(p),
                           latency_s=elapsed / len(requests), finish_reason="choice")
                for s, p in zip(scores, prompts)]

    def _head_length(self, request: Request, prompt: list[int]) -> int:
        """How many leading tokens of `prompt` are the turns before the last one (0 when there are none, or
        when they do not tokenise to a prefix of the whole prompt)."""
        messages = request.messages or []
        if request.prompt is not None or len(messages) < 2:
            return 0
        head = self.tokenizer.apply_chat_template([m.model_dump() for m in messages[:-1]], tokenize=False)
        tokens = self._head_tokens.get(head)
        if tokens is None:
            tokens = self._encode([head])[0]
            self._head_tokens = {head: tokens}  # one exam at a time: keep the last head only
        return len(tokens) if len(tokens) < len(prompt) and prompt[:len(tokens)] == tokens else 0

    def _head_cache(self, head: list[int]) -> Any:
        """A fresh copy of the key/value cache of `head` (computed once per head; items extend their copy)."""
        import copy

        key = tuple(head)
        if self._head_kv is None or self._head_kv[0] != key:
            keep = {"logits_to_keep": 1} if self._keeps_logits else {}  # only the cache is wanted
            out = self.model(input_ids=self.torch.tensor([head], device=self.device), use_cache=True, **keep)
            self._head_kv = (key, out[self._cache_arg if self._cache_arg in out else "past_key_values"])
        return copy.deepcopy(self._head_kv[1])

    def _score_one(self, prompt: list[int], choices: list[str], head: int = 0) -> dict[str, float]:
        """One forward pass: the item's own tokens and every candidate's tokens but its last, as a tree.

        The row is `own + fed(c1) + fed(c2) + ...` on top of the shared turns' cache: the item's own tokens
        attend causally, as in the plain prompt; each candidate's tokens attend to the whole prompt and to
        their own candidate's earlier tokens only, at the positions they would have after the prompt
        (a 4D attention mask and explicit position ids). Every candidate's first token is read off the
        prompt's last position, each later token off its own candidate's previous one, and the log-softmax
        is taken only at the positions read."""
        torch = self.torch
        tokens = {c: self.tokenizer(c, add_special_tokens=False)["input_ids"] or [self.tokenizer.eos_token_id]
                  for c in choices}
        long = [c for c, t in tokens.items() if len(t) > 1]
        if self._window and len(prompt) + max(len(t) for t in tokens.values()) > self._window:
            return self._score_sequences(prompt, tokens)
        own = prompt[head:]
        spans: list[tuple[str, int, int]] = []  # candidate, first row, rows
        row = len(own)
        for candidate in long:
            spans.append((candidate, row, len(tokens[candidate]) - 1))
            row += len(tokens[candidate]) - 1
        ids = own + [t for candidate in long for t in tokens[candidate][:-1]]
        positions = list(range(head, len(prompt))) + [len(prompt) + j for _, _, n in spans for j in range(n)]
        allowed = torch.zeros(len(ids), head + len(ids), dtype=torch.bool)
        allowed[:, :head] = True  # everyone sees the shared turns
        allowed[:len(own), head:head + len(own)] = torch.tril(torch.ones(len(own), len(own), dtype=torch.bool))
        allowed[len(own):, head:head + len(own)] = True  # candidates see the whole prompt
        for _, first_row, n in spans:
            allowed[first_row:first_row + n, head + first_row:head + first_row + n] = \
                torch.tril(torch.ones(n, n, dtype=torch.bool))
        dtype = self.model.dtype
        mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
        read_from = len(own) - 1  # the rows whose logits are read: the prompt's last, then the candidates'
        extra: dict[str, Any] = {"logits_to_keep": len(ids) - read_from} if self._keeps_logits else {}
        if head:
            extra[self._cache_arg] = self._head_cache(prompt[:head])
        logits = self.model(input_ids=torch.tensor([ids], device=self.device),
                            position_ids=torch.tensor([positions], device=self.device),
                            attention_mask=mask[None, None].to(self.device), use_cache=True,
                            **extra).logits[0, -(len(ids) - read_from):]
        first = torch.log_softmax(logits[0].float(), dim=-1)
        scores = {c: float(first[t[0]]) for c, t in tokens.items()}
        for candidate, first_row, n in spans:
            read = logits[first_row - read_from:first_row - read_from + n].float()  # this candidate's rows
            targets = torch.tensor(tokens[candidate][1:], device=self.device)
            picked = read.gather(1, targets[:, None])[:, 0]
            scores[candidate] += float((picked - torch.logsumexp(read, dim=-1)).sum())
        return scores

    def _score_sequences(self, prompt: list[int], tokens: dict[str, list[int]]) -> dict[str, float]:
        """Each candidate scored in a full forward pass of prompt + candidate, with the model's own masks."""
        torch, scores = self.torch, {}
        for candidate, ids in tokens.items():
            extra = {"logits_to_keep": len(ids)} if self._keeps_logits else {}
            logits = self.model(input_ids=torch.tensor([prompt + ids[:-1]], device=self.device), use_cache=False,
                                **extra).logits[0, -len(ids):].float()
            picked = logits.gather(1, torch.tensor(ids, device=self.device)[:, None])[:, 0]
            scores[candidate] = float((picked - torch.logsumexp(logits, dim=-1)).sum())
        return scores

    def close(self) -> None:
        del self.model
