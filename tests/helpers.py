"""Helpers shared by tests: small exams and slices of the shared data."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from magister.types import Exam, Item, Kind, Request

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def sentiment_exam(n: int = 20) -> Exam:
    labels = ["negative", "positive"]
    items = [Item(id=f"s{i}", input=f"text number {i}", reference=labels[i % 2], kind=Kind.classification,
                  labels=labels) for i in range(n)]
    return Exam(name="sentiment", items=items)


def trec_slice(n: int, split: str = "test") -> list[dict]:
    """The first n rows of the shared TREC data (skips the test when ../shared is absent)."""
    path = SHARED / "trec" / f"{split}.jsonl"
    if not path.exists():
        pytest.skip("../shared/data is not beside the project")
    with path.open() as f:
        return [json.loads(next(f)) for _ in range(n)]


WORDS = ("the a is it good bad movie food great awful fine terrible nice film meal positive negative label answer "
         "yes no one two").split()
TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> {% endfor %}"
            "{% if add_generation_prompt %}<|assistant|> {% endif %}")


def build_tiny_model(path: Path) -> Path:
    """A 2-layer Llama with a word-level tokenizer and a chat template, saved like any HF model dir."""
    import torch
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    specials = ["<pad>", "<s>", "</s>", "<unk>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
    vocab = {token: i for i, token in enumerate(specials + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>",
                                                     eos_token="</s>", unk_token="<unk>")
    tokenizer.chat_template = TEMPLATE
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=256, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    transformers.LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


# A sentiment task in the tiny model's vocabulary, and a teacher that follows the teach prompts.
POSITIVE = ["good movie", "great food", "nice film", "fine meal", "good food", "great film", "nice movie", "fine film"]
NEGATIVE = ["bad movie", "awful food", "terrible film", "bad meal", "awful film", "terrible meal", "bad food",
            "awful movie"]


def label_of(text: str) -> str:
    return "positive" if any(w in text for w in ("good", "great", "nice", "fine")) else "negative"


def scripted(request: Request) -> str:
    """A teacher that follows the strategy prompts, and answers verification questions by keyword."""
    messages = request.messages or []
    system, user = messages[0].content, messages[-1].content
    if system.startswith("Classify the input"):  # the verifier sitting a new example
        return label_of(user)
    if "explain why" in user:
        label = re.search(r"Correct answer: (\w+)", user).group(1)  # type: ignore[union-attr]
        return f"The words in it carry a {label} tone overall.\nAnswer: {label}"
    label = re.search(r"(?:answer|label) (?:is also |stays |is )?'(\w+)'", user).group(1)  # type: ignore[union-attr]
    words = ["good", "great", "nice", "fine"] if label == "positive" else ["bad", "awful", "terrible"]
    seed = request.seed or 0
    return "\n".join(f"Input: {words[(seed + i) % len(words)]} {['movie', 'food', 'film', 'meal'][(seed // 7 + i) % 4]}"
                     f" {'it is' if i % 2 else 'the'}" for i in range(2)) + "\nInput: awful movie"
