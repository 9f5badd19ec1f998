"""The teach config: YAML, flag overrides, and errors that name the file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from magister.errors import ConfigError, DataError
from magister.teach import TeachConfig, load_config


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
    ("seed: a\nexam: b\nrounds: 2\nrounds: 5\n", r"teach.yaml:4: 'rounds' is given twice \(line 3 and line 4\)"),
    ("seed: a\nexam: b\ntrain:\n  lr: 1\n  lr: 2\n", r"teach.yaml:5: 'lr' is given twice .*\(field 'train.lr'\)"),
    ("seed: a\nexam: b\nrounds: true\n", r"teach.yaml:3: expected a number, got true \(field 'rounds'\)"),
    ("seed: a\nexam: b\nrounds: 99999999999999999999999\n", r"teach.yaml:3: .*less than or equal to 100"),
    ("seed: a\nexam: b\ntrain:\n  epochs: .nan\n", r"teach.yaml:4: .*finite.*\(field 'train.epochs'\)"),
])
def test_bad_configs_name_the_file_and_field(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "teach.yaml"
    path.write_text(text)
    with pytest.raises(DataError, match=match):
        load_config(path, {})


def leaf_fields(model: type, prefix: str = "") -> list[str]:
    """Every settable field of a config model, nested ones dotted."""
    from pydantic import BaseModel

    out = []
    for name, info in model.model_fields.items():
        kind = info.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            out += leaf_fields(kind, f"{prefix}{name}.")
        else:
            out.append(prefix + name)
    return out


def test_every_field_can_be_set_from_the_command_line(tmp_path: Path) -> None:
    from magister.teach.config import parse_sets

    sets = ["temperature=0.3", "verify_shots=4", "verify_check=false", "probe_per_call=5", "train.lora_alpha=64",
            "label_descriptions={human: a person, entity: a thing}", "fold_epochs=2", "select=last"]
    config = load_config(None, {"seed": "s.jsonl", "exam": "e.jsonl", **parse_sets(sets)})
    assert (config.temperature, config.verify_shots, config.verify_check, config.probe_per_call) == (0.3, 4, False, 5)
    assert config.train.lora_alpha == 64 and config.label_descriptions == {"human": "a person", "entity": "a thing"}
    assert config.fold_epochs == 2 and config.select == "last"
    assert "train.lora_alpha" in leaf_fields(TeachConfig) and len(leaf_fields(TeachConfig)) > 40
    for bad in ("temperature", "=3"):
        with pytest.raises(ConfigError, match="FIELD=VALUE"):
            parse_sets([bad])
    with pytest.raises(DataError) as error:  # a wrong value names the field
        load_config(None, {"seed": "s.jsonl", "exam": "e.jsonl", **parse_sets(["train.lora_alpha=many"])})
    assert error.value.field == "train.lora_alpha"
