"""The transformers backend on a tiny random Llama built in code (seconds, no download)."""

from __future__ import annotations

from pathlib import Path

import pytest

from magister.models.base import load_model
from magister.types import Message, Request

from helpers import build_tiny_model

pytestmark = pytest.mark.hf
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    return load_model(f"hf:{build_tiny_model(tmp_path_factory.mktemp('tiny'))}")


def chat(text: str, **kw) -> Request:  # noqa: ANN003
    return Request(messages=[Message(role="user", content=text)], **kw)


def test_batched_scores_equal_one_at_a_time(tiny) -> None:  # noqa: ANN001
    """Padding in a batch must not change any candidate's log-probability."""
    requests = [chat("good movie", choices=["positive", "negative", "yes no one"]),
                chat("the food is awful bad bad", choices=["yes", "no"])]
    batched = tiny.generate(requests)
    for request, completion in zip(requests, batched):
        [alone] = tiny.generate([request])
        assert completion.choice_logprobs == pytest.approx(alone.choice_logprobs, abs=1e-4)
        assert completion.text == max(alone.choice_logprobs, key=alone.choice_logprobs.get)
    # Against a direct computation for one candidate:
    ids = tiny.tokenizer(tiny.format(requests[1]) + "yes", add_special_tokens=False, return_tensors="pt").input_ids
    with torch.no_grad():
        logprobs = torch.log_softmax(tiny.model(ids).logits[0, -2], dim=-1)
    assert batched[1].choice_logprobs["yes"] == pytest.approx(float(logprobs[ids[0, -1]]), abs=1e-4)


def direct(tiny, request: Request, candidate: str) -> float:  # noqa: ANN001
    """A candidate's log-probability from one full forward of prompt + candidate."""
    prompt = tiny.tokenizer(tiny.format(request), add_special_tokens=False).input_ids
    target = tiny.tokenizer(candidate, add_special_tokens=False).input_ids
    with torch.no_grad():
        logprobs = torch.log_softmax(tiny.model(torch.tensor([prompt + target])).logits[0], dim=-1)
    return sum(float(logprobs[len(prompt) - 1 + j, t]) for j, t in enumerate(target))


def test_multi_token_candidates_on_the_shared_prompt_cache_equal_full_sequences(tiny) -> None:  # noqa: ANN001
    """Candidates of several tokens scored on the prompt's key/value cache equal a full forward of prompt + candidate."""
    request = chat("the movie is good", choices=["good movie", "bad food awful", "yes", "no one two the a"])
    [completion] = tiny.generate([request])
    for candidate in request.choices:
        assert completion.choice_logprobs[candidate] == pytest.approx(direct(tiny, request, candidate), abs=1e-4)
    assert tiny.generate([request])[0].choice_logprobs == completion.choice_logprobs  # the same, every time


def test_shared_turns_are_computed_once_and_change_no_score(tiny) -> None:  # noqa: ANN001
    """The system and few-shot turns' cache, computed once and reused, gives a full forward's scores, the same
    whatever was scored before."""
    def request(text: str) -> Request:
        return Request(messages=[Message(role="system", content="Classify the text. Labels: good movie, bad."),
                                 Message(role="user", content="an example"), Message(role="assistant", content="bad"),
                                 Message(role="user", content=text)], choices=["good movie", "bad"])

    first, second = request("the movie is good"), request("awful food")
    prompt = tiny.tokenizer(tiny.format(first), add_special_tokens=False).input_ids
    head = tiny._head_length(first, prompt)
    assert 0 < head < len(prompt) and head == tiny._head_length(second, tiny._encode([tiny.format(second)])[0])
    [after_other] = tiny.generate([second, first])[1:]
    tiny._head_kv = None
    [fresh] = tiny.generate([first])
    assert after_other.choice_logprobs == fresh.choice_logprobs  # a function of the request alone
    for candidate in first.choices:
        assert fresh.choice_logprobs[candidate] == pytest.approx(direct(tiny, first, candidate), abs=1e-4)


def test_batched_generation_matches_single(tiny) -> None:  # noqa: ANN001
    requests = [chat("good", max_tokens=5), chat("the movie is great great", max_tokens=3)]
    batched = tiny.generate(requests)
    singles = [tiny.generate([r])[0] for r in requests]
    assert [c.text for c in batched] == [c.text for c in singles]
    assert batched[0].completion_tokens <= 5 and batched[1].completion_tokens <= 3


def test_identity_changes_with_weights(tmp_path: Path) -> None:
    from magister.models.hf import _identity

    path = build_tiny_model(tmp_path / "m")
    before = _identity(path)
    weights = next(path.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes() + b"\0")
    assert _identity(path) != before


def test_sits_an_exam(tiny, store) -> None:  # noqa: ANN001
    from helpers import sentiment_exam
    from magister.sit import sit

    summary = sit(sentiment_exam(6), tiny, store, progress=False)
    assert summary.n == 6 and summary.model_calls == 6


@pytest.mark.slow
@pytest.mark.llamacpp
def test_embedded_gguf_agrees_with_llamacpp() -> None:
    """transformers de-quantises the embedded GGUF, and llama.cpp scores choices on a float32 copy of it: the
    same weights, so the scores agree to float rounding (about 40 s)."""
    pytest.importorskip("llama_cpp")
    request = Request(messages=[Message(role="system", content="Answer with one label from: negative, positive."),
                                Message(role="user", content="I loved this movie.")],
                      choices=["negative", "positive", "Positive"])
    hf_scores = load_model("hf:smollm2").generate([request])[0].choice_logprobs
    cpp_scores = load_model("llamacpp:smollm2").generate([request])[0].choice_logprobs
    assert max(hf_scores, key=hf_scores.get) == max(cpp_scores, key=cpp_scores.get)
    for label in hf_scores:
        assert hf_scores[label] == pytest.approx(cpp_scores[label], abs=0.05)  # on the Q4_1 weights: 0.5


def test_a_prompt_longer_than_a_sliding_window_is_scored_one_sequence_per_candidate(tiny, monkeypatch) -> None:  # noqa: ANN001
    """Where the model attends within a window the prompt outgrows, no custom mask replaces the model's own:
    each candidate runs as a full sequence, with a full forward's scores."""
    request = chat("the movie is good", choices=["good movie", "bad food awful", "yes"])
    monkeypatch.setattr(tiny, "_window", 4)
    calls = []
    original = tiny._score_sequences
    monkeypatch.setattr(tiny, "_score_sequences", lambda *a: calls.append(1) or original(*a))
    [completion] = tiny.generate([request])
    assert calls
    for candidate in request.choices:
        assert completion.choice_logprobs[candidate] == pytest.approx(direct(tiny, request, candidate), abs=1e-4)
