"""The embedded default model through llama.cpp: generation, constrained choice scoring, the cache."""

from __future__ import annotations

import numpy as np
import pytest

from magister.errors import ConfigError
from magister.models.base import load_model
from magister.types import Message, Request

pytestmark = pytest.mark.llamacpp
llama_cpp = pytest.importorskip("llama_cpp")


@pytest.fixture(scope="module")
def smol():  # noqa: ANN201
    model = load_model("llamacpp:smollm2")
    yield model
    model.close()


def classify(text: str) -> Request:
    return Request(messages=[Message(role="system", content="Answer with one label from: negative, positive."),
                             Message(role="user", content=text)], choices=["negative", "positive", "neutral"])


def test_identity_names_the_weights(smol) -> None:  # noqa: ANN001
    assert smol.identity().startswith("SmolLM2-135M-Instruct.Q4_1.gguf:")
    assert smol.supports_choices


def test_choices_are_scored_on_a_float32_copy_made_once(smol) -> None:  # noqa: ANN001
    """The embedded Q4_1 model generates on its quantised file and scores choices on a float32 copy in the
    cache folder; loading the model again re-uses the copy."""
    from magister.models.llamacpp import float_copy

    assert smol.choice_path != smol.path and smol.choice_path.name.endswith(".f32.gguf")
    assert smol.chooser.metadata["general.file_type"] == str(llama_cpp.LLAMA_FTYPE_ALL_F32)
    assert smol.identity().endswith(":choices-f32")
    made = smol.choice_path.stat().st_mtime_ns
    assert float_copy(smol.path) == smol.choice_path and smol.choice_path.stat().st_mtime_ns == made
    assert not [p for p in smol.choice_path.parent.iterdir() if p.name.endswith(".partial")]


def test_without_a_writable_cache_choices_are_scored_on_the_quantised_file(tmp_path, monkeypatch, capsys) -> None:  # noqa: ANN001
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("MAGISTER_CACHE", str(blocked))
    model = load_model("llamacpp:smollm2")
    assert model.chooser is model.llm and model.choice_path == model.path
    assert not model.identity().endswith(":choices-f32")
    assert "scored on the quantised weights" in capsys.readouterr().err
    [completion] = model.generate([classify("I loved it.")])
    assert set(completion.choice_logprobs) == {"negative", "positive", "neutral"}
    model.close()


INTENTS = ["PlayMusic", "SearchScreeningEvent", "AddToPlaylist", "GetWeather"]  # several tokens each


@pytest.mark.parametrize("asked", [classify("I loved it."),
                                     classify("play some jazz").model_copy(update={"choices": INTENTS})],
                         ids=["labels", "multi-token labels"])
def test_choice_scores_match_full_logits(smol, asked) -> None:  # noqa: ANN001
    """Scores from last-position logits (and, for a label of several tokens, its continuation decoded in one
    call) equal those computed from a logits_all context."""
    request = asked
    [completion] = smol.generate([request])
    from magister.models.llamacpp import new_llama

    reference = new_llama(model_path=str(smol.choice_path), n_ctx=512, logits_all=True, verbose=False)
    prompt = reference.tokenize(smol.format(request).encode(), add_bos=False, special=True)
    assert any(len(reference.tokenize(c.encode(), add_bos=False)) > 1 for c in request.choices) or \
        request.choices[0] == "negative"
    for candidate, score in completion.choice_logprobs.items():
        tokens = reference.tokenize(candidate.encode(), add_bos=False)
        reference.reset()
        reference.eval(prompt + tokens)
        expected = 0.0
        for offset, token in enumerate(tokens):
            row = np.asarray(reference.scores[len(prompt) - 1 + offset], dtype=np.float64)
            expected += row[token] - row.max() - np.log(np.exp(row - row.max()).sum())
        assert score == pytest.approx(expected, abs=1e-3)
    assert completion.text == max(completion.choice_logprobs, key=completion.choice_logprobs.get)
    reference.close()


def test_scores_do_not_depend_on_the_previous_prompt(smol) -> None:  # noqa: ANN001
    """The key-value cache re-use must not leak one prompt's state into the next."""
    a, b = classify("Terrible food."), classify("Terrible service.")
    first = smol.generate([a])[0].choice_logprobs
    smol.generate([b, Request(messages=[Message(role="user", content="Hello")], max_tokens=5)])
    assert smol.generate([a])[0].choice_logprobs == first  # bit for bit


def test_generation_is_deterministic_and_bounded(smol) -> None:  # noqa: ANN001
    """Greedy output must not depend on what was asked before (the cache re-uses prompt blocks)."""
    system = Message(role="system", content="You are a careful assistant. " * 8)  # more than one block
    request = Request(messages=[system, Message(role="user", content="Name a colour.")], max_tokens=12)
    other = Request(messages=[system, Message(role="user", content="Name a fruit.")], max_tokens=12)
    smol.llm.reset()
    alone = smol.generate([request])[0]
    after_other = smol.generate([other, request, request])
    assert after_other[1].text == after_other[2].text == alone.text
    assert 0 < alone.completion_tokens <= 12 and alone.prompt_tokens > 40
    raw = smol.generate([Request(prompt="The capital of France is", max_tokens=4)])[0]
    assert raw.completion_tokens <= 4


def test_missing_gguf_file() -> None:
    with pytest.raises(ConfigError, match="no GGUF file at"):
        load_model("llamacpp:/nowhere/model.gguf")


def test_sits_demo_items(store) -> None:  # noqa: ANN001
    from magister.sit import sit
    from helpers import sentiment_exam

    model = load_model("llamacpp:smollm2")
    summary = sit(sentiment_exam(6), model, store, progress=False)
    assert summary.n == 6 and summary.model_calls == 6 and summary.parse_failures == 0
    again = sit(sentiment_exam(6), model, store, progress=False)
    assert again.cache_hits == 6 and again.accuracy == summary.accuracy
    model.close()


def test_many_multi_token_candidates_score_as_each_alone(smol) -> None:  # noqa: ANN001
    """More candidates than one decode call holds (they are scored in groups, each a sequence on the prompt's
    cells): each scores as it does alone, and a second asking, after another prompt, is the same bit for bit."""
    from magister.models.llamacpp import SEQUENCES

    names = [f"{verb}{thing}" for verb in ("Play", "Search", "Book", "Rate", "Add") for thing in
             ("Music", "Weather", "Restaurant", "Screening")][: SEQUENCES + 4]
    request = classify("play some jazz").model_copy(update={"choices": names})
    [together] = smol.generate([request])
    for name in names[:: 5]:
        [alone] = smol.generate([request.model_copy(update={"choices": [name]})])
        assert together.choice_logprobs[name] == pytest.approx(alone.choice_logprobs[name], abs=1e-3)
    smol.generate([classify("Terrible food.").model_copy(update={"choices": INTENTS})])
    assert smol.generate([request])[0].choice_logprobs == together.choice_logprobs


def test_a_failed_decode_leaves_nothing_behind(smol, monkeypatch) -> None:  # noqa: ANN001
    """A decode that fails half-way (here: interrupted) leaves no candidate's cells in the cache: the next
    asking of the same request gets the same scores, bit for bit."""
    request = classify("play some jazz").model_copy(update={"choices": INTENTS})
    [before] = smol.generate([request])
    original = type(smol)._decode_group

    def interrupted(self, tail, keep, group):  # noqa: ANN001, ANN202
        original(self, tail, keep, group)
        raise KeyboardInterrupt

    monkeypatch.setattr(type(smol), "_decode_group", interrupted)
    with pytest.raises(KeyboardInterrupt):
        smol.generate([classify("Terrible food.").model_copy(update={"choices": INTENTS})])
    monkeypatch.undo()
    assert smol.generate([request])[0].choice_logprobs == before.choice_logprobs


def test_a_candidate_too_long_for_the_context_is_one_clear_error(smol) -> None:  # noqa: ANN001
    from magister.errors import BackendError

    long = " ".join(["word"] * 600)
    with pytest.raises(BackendError, match="cannot be scored"):
        smol.generate([classify("hi").model_copy(update={"choices": ["negative", long]})])
