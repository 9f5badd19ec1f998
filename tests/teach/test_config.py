"""The teach config: YAML, flag overrides, and errors that name the file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from magister.errors import DataError
from magister.teach import load_config


def test_yaml_paths_are_relative_to_the_file_and_flags_override(tmp_path: Path) -> None:
    path = tmp_path / "teach.yaml"
    path.write_text("seed: data/seed.jsonl\nexam: /abs/exam.jsonl\nrounds: 2\ntrain:\n  epochs: 1\n")
    config = load_config(path, {"rounds": 4, "train.lora_r": 4, "strategies": ["similar", "new"], "teacher": None})
    assert config.seed == tmp_path / "data" / "seed.jsonl" and config.exam == Path("/abs/exam.jsonl")
    assert config.rounds == 4 and config.train.epochs == 1 and config.train.lora_r == 4
    assert config.strategies == ["similar", "new"] and config.teacher == "llamacpp:smollm2"


def test_flags_alone_are_enough() -> None:
    config = load_config(None, {"seed": "s.jsonl", "exam": "e.jsonl"})
    assert config.student == "smollm2" and config.verify == "teacher" and config.dedupe == "rouge"


@pytest.mark.parametrize(("text", "match"), [
    ("seed: a\nexam: b\nstrategies: [similar, guess]\n", r"teach.yaml: .*\(field 'strategies.1'\)"),
    ("seed: a\nexam: b\ntrain: {epochs: -1}\n", r"\(field 'train.epochs'\)"),
    ("seed: a\nexam: b\nteachr: x\n", r"\(field 'teachr'\)"),
    ("exam: b\n", r"\(field 'seed'\)"),
    ("seed: [a\n", r"teach.yaml:2: not valid YAML"),
    ("- a\n- b\n", r"must be a mapping"),
])
def test_bad_configs_name_the_file_and_field(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "teach.yaml"
    path.write_text(text)
    with pytest.raises(DataError, match=match):
        load_config(path, {})
