"""The exam loader: formats, field mapping, kind inference, and a clear error for each bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import write_jsonl
from magister.errors import DataError
from magister.exams.load import FieldMap, load_exam, numeric_reference, pick_fewshot
from magister.types import Item, Kind


def test_jsonl_classification_inferred(tmp_path: Path) -> None:
    rows = [{"text": f"q{i}", "label": ["a", "b", "c"][i % 3]} for i in range(9)]
    exam = load_exam(write_jsonl(tmp_path / "cls.jsonl", rows))
    assert exam.name == "cls"
    assert [i.kind for i in exam.items] == [Kind.classification] * 9
    assert exam.items[0].labels == ["a", "b", "c"]
    assert exam.items[0].input == "q0" and exam.items[0].id == "0"


def test_multiple_choice_letter_text_and_index(tmp_path: Path) -> None:
    rows = [{"id": "x", "question": "2+2?", "options": ["3", "4"], "answer": "B"},
            {"id": "y", "question": "1+1?", "options": ["2", "5"], "answer": "2"},
            {"id": "z", "question": "0+1?", "options": ["0", "1"], "answer": 1}]
    exam = load_exam(write_jsonl(tmp_path / "mc.jsonl", rows))
    assert [i.kind for i in exam.items] == [Kind.multiple_choice] * 3
    assert [i.reference for i in exam.items] == ["B", "A", "B"]
    assert exam.items[0].candidates == ["A", "B"]


def test_numeric_gsm8k_style(tmp_path: Path) -> None:
    rows = [{"question": "q1", "answer": "First 2, then 3.\n#### 1,234"}, {"question": "q2", "answer": "#### -7"}]
    exam = load_exam(write_jsonl(tmp_path / "gsm.jsonl", rows))
    assert [i.reference for i in exam.items] == ["1234", "-7"]
    assert exam.items[0].kind is Kind.numeric
    assert exam.items[0].meta["solution"].endswith("#### 1,234")


def test_free_form_and_meta_kept(tmp_path: Path) -> None:
    rows = [{"question": f"q{i}", "reference": f"answer {i}", "topic": "t"} for i in range(6)]
    exam = load_exam(write_jsonl(tmp_path / "ff.jsonl", rows))
    assert exam.items[0].kind is Kind.free_form
    assert exam.items[0].meta == {"topic": "t"}


def test_explicit_mapping_labels_and_kind(tmp_path: Path) -> None:
    rows = [{"q": "x", "gold": "yes", "uid": 7}, {"q": "y", "gold": "no", "uid": 8}]
    path = write_jsonl(tmp_path / "m.jsonl", rows)
    exam = load_exam(path, FieldMap(input="q", reference="gold", id="uid", labels=("yes", "no", "maybe")))
    assert exam.items[1].id == "8" and exam.items[1].labels == ["yes", "no", "maybe"]
    assert load_exam(path, FieldMap(input="q", reference="gold", kind=Kind.free_form)).items[0].kind is Kind.free_form


def test_csv_and_parquet_and_hf_dir(tmp_path: Path) -> None:
    csv_path = tmp_path / "e.csv"
    csv_path.write_text('question,choices,answer\n"Pick one","[""x"",""y""]",A\n"Another","[""p"", ""q""]",B\n')
    exam = load_exam(csv_path)
    assert exam.items[1].choices == ["p", "q"] and exam.items[1].reference == "B"

    import datasets

    data = datasets.Dataset.from_list([{"text": "a", "label": "pos"}, {"text": "b", "label": "neg"}])
    data.to_parquet(str(tmp_path / "e.parquet"))
    assert [i.reference for i in load_exam(tmp_path / "e.parquet").items] == ["pos", "neg"]
    datasets.DatasetDict({"test": data}).save_to_disk(str(tmp_path / "hfdir"))
    assert len(load_exam(tmp_path / "hfdir").items) == 2
    with pytest.raises(DataError, match="no split 'train'"):
        load_exam(tmp_path / "hfdir", FieldMap(split="train"))


def test_row_declared_kinds_mix(tmp_path: Path) -> None:
    rows = [{"kind": "numeric", "input": "1+1", "reference": "2"},
            {"kind": "classification", "input": "great", "reference": "pos", "labels": ["pos", "neg"]},
            {"kind": "multiple_choice", "input": "pick", "choices": ["a", "b"], "reference": "A"}]
    exam = load_exam(write_jsonl(tmp_path / "mix.jsonl", rows))
    assert [i.kind for i in exam.items] == [Kind.numeric, Kind.classification, Kind.multiple_choice]
    assert "kind" not in exam.items[0].meta


def test_limit_and_version_changes_with_content(tmp_path: Path) -> None:
    rows = [{"text": f"q{i}", "label": "a" if i % 2 else "b"} for i in range(10)]
    path = write_jsonl(tmp_path / "v.jsonl", rows)
    assert len(load_exam(path, limit=4).items) == 4
    v1 = load_exam(path).version
    rows[0]["text"] = "changed"
    assert load_exam(write_jsonl(path, rows)).version != v1


# -- bad input: each names file, line and field ------------------------------------------

def expect_error(path: Path, match: str, line: int | None = None, field: str | None = None,
                 fields: FieldMap | None = None) -> DataError:
    with pytest.raises(DataError, match=match) as info:
        load_exam(path, fields)
    err = info.value
    assert err.path == str(path)
    assert err.line == line
    assert err.field == field
    return err


def test_malformed_json(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": \n')
    err = expect_error(path, "malformed JSON", line=2)
    assert str(err).startswith(f"{path}:2: malformed JSON")


def test_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n[1, 2]\n')
    expect_error(path, "expected a JSON object", line=2)


def test_missing_field(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [{"text": "a", "label": "x"}, {"text": "b"}])
    expect_error(path, "missing field", line=2, field="label")


def test_empty_value(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [{"text": "a", "label": "x"}, {"text": "  ", "label": "y"}])
    expect_error(path, "missing or empty", line=2, field="text")


def test_mistyped_field(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [{"text": "a", "label": "x"}, {"text": "b", "label": {"k": 1}}])
    expect_error(path, "expected text or a number, got dict", line=2, field="label")


def test_mistyped_choices(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [{"question": "a", "choices": ["x", "y"], "answer": "A"},
                                                {"question": "b", "choices": 5, "answer": "A"}])
    expect_error(path, "list of options", line=2, field="choices")


def test_choice_reference_out_of_range(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [{"question": "a", "choices": ["x", "y"], "answer": "D"}])
    expect_error(path, "neither a letter", line=1, field="answer")


def test_duplicate_ids(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [{"id": "a", "text": "x", "label": "p"},
                                                {"id": "b", "text": "y", "label": "p"},
                                                {"id": "a", "text": "z", "label": "n"}])
    expect_error(path, "duplicate id 'a' \\(first on line 1\\)", line=3, field="id")


def test_empty_exam(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n")
    expect_error(path, "no items")


def test_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"text": "ok", "label": "a"}\n{"text": "caf\xe9", "label": "b"}\n')
    expect_error(path, "not valid UTF-8 \\(byte 0xe9", line=2)


def test_label_outside_given_set(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [{"text": "a", "label": "x"}, {"text": "b", "label": "zzz"}])
    expect_error(path, "not in the label set", line=2, field="label", fields=FieldMap(labels=("x", "y")))


def test_numeric_reference_not_a_number(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [{"question": "a", "answer": "12"}, {"question": "b", "answer": "many"}])
    expect_error(path, "expected a number", line=2, field="answer", fields=FieldMap(kind=Kind.numeric))


def test_unknown_column_and_unguessable_input(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [{"body": "a", "label": "x"}])
    expect_error(path, "cannot tell which column is the input; name it with --input", line=1)
    expect_error(path, "no column 'nope'", line=1, field="nope", fields=FieldMap(input="nope"))


def test_csv_ragged_row(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("text,label\na,x\nb,y,extra\n")
    expect_error(path, "more values than header", line=3)


def test_unknown_format_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "x.xlsx").write_text("")
    expect_error(tmp_path / "x.xlsx", "unknown exam format")
    expect_error(tmp_path / "nope.jsonl", "no such file")


def test_unknown_row_kind(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [{"kind": "essay", "input": "a", "reference": "b"}])
    expect_error(path, "unknown kind 'essay'", line=1, field="kind")


def test_nothing_written_when_load_fails(tmp_path: Path, magister_home: Path) -> None:
    from typer.testing import CliRunner

    from magister.cli import app

    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "a", "label": "x"}\nnot json\n')
    result = CliRunner().invoke(app, ["exam", str(path), "--model", "mock:first"])
    assert result.exit_code == 1
    assert f"{path}:2: malformed JSON" in result.output
    assert not (magister_home / "magister.db").exists()


def test_numeric_reference_parsing() -> None:
    assert numeric_reference("#### 1,000") == "1000"
    assert numeric_reference("$12.50") == "12.50"
    assert numeric_reference("-3") == "-3"
    assert numeric_reference("three") is None


def test_pick_fewshot_spreads_labels_and_is_seeded(tmp_path: Path) -> None:
    rows = [{"text": f"q{i}", "label": ["a", "b", "c"][i % 3]} for i in range(30)]
    items = load_exam(write_jsonl(tmp_path / "f.jsonl", rows)).items
    shots = pick_fewshot(items, 6, seed=1)
    assert sorted(s.reference for s in shots) == ["a", "a", "b", "b", "c", "c"]
    assert [s.id for s in shots] == [s.id for s in pick_fewshot(items, 6, seed=1)]
    assert json.dumps([s.id for s in shots]) != json.dumps([s.id for s in pick_fewshot(items, 6, seed=2)])


def test_item_rows_read_back_to_the_same_items(tmp_path: Path) -> None:
    from magister.exams.load import item_row

    items = [Item(id="a", input="Where is Rome?", reference="location", kind=Kind.classification,
                  labels=["human", "location"], meta={"written_by": "teacher"}),
             Item(id="b", input="2 + 2?", reference="4", kind=Kind.numeric),
             Item(id="c", input="Pick one", reference="B", kind=Kind.multiple_choice, choices=["x", "y"])]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(item_row(i)) + "\n" for i in items))
    assert load_exam(path).items == items


def test_unicode_line_separators_inside_strings_do_not_split_rows(tmp_path: Path) -> None:
    """U+0085, U+2028 and U+2029 are legal inside JSON strings and CSV fields (MMLU-Pro has them)."""
    text = "a\u0085b\u2028c\u2029d"
    path = tmp_path / "u.jsonl"
    path.write_text(json.dumps({"id": "x", "question": text, "answer": "4"}, ensure_ascii=False) + "\n"
                    + json.dumps({"id": "y", "question": "q", "answer": "5"}) + "\r\n", encoding="utf-8")
    exam = load_exam(path)
    assert [i.input for i in exam.items] == [text, "q"]
    csv_path = tmp_path / "u.csv"
    csv_path.write_text(f'id,question,answer\nx,"{text}",4\n', encoding="utf-8")
    assert load_exam(csv_path).items[0].input == text


def test_a_nan_reference_is_missing_not_the_label_nan(tmp_path: Path) -> None:
    path = tmp_path / "nan.jsonl"
    path.write_text('{"id": "a", "question": "q", "answer": "x"}\n{"id": "b", "question": "q", "answer": NaN}\n')
    with pytest.raises(DataError, match=r"nan.jsonl:2: missing value \(nan\) \(field 'answer'\)"):
        load_exam(path)


def test_more_than_26_options_is_a_clear_error(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "wide.jsonl", [{"id": "a", "question": "q", "answer": "A",
                                                  "choices": [f"o{i}" for i in range(27)]}])
    with pytest.raises(DataError, match=r"wide.jsonl:1: 27 options; multiple choice takes at most 26"):
        load_exam(path)


def test_checklist_is_the_items_own_field(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "c.jsonl", [{"question": "Capital of France?", "answer": "Paris",
                                               "checklist": ["Does it say Paris?", "Is it one word?"]}])
    item = load_exam(path).items[0]
    assert item.checklist == ["Does it say Paris?", "Is it one word?"] and "checklist" not in item.meta
    bad = write_jsonl(tmp_path / "b.jsonl", [{"question": "Q?", "answer": "A", "checklist": "Is it A?"}])
    with pytest.raises(DataError, match="checklist") as error:
        load_exam(bad)
    assert "b.jsonl:1:" in str(error.value)
