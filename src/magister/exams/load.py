"""Load an Exam from JSONL, CSV, Parquet or a Hugging Face dataset, with a field mapping.

Rows are read in full and checked before anything is returned, so an exam that fails
to load leaves nothing behind. Every error names the file, the line (row) and the field.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from magister.errors import DataError
from magister.jsonl import parse_json_line
from magister.jsonl import read_lines as _decode_lines
from magister.types import Exam, Item, Kind, letters

# Column names tried, in order, when the mapping leaves a field unset.
INPUT_NAMES = ("input", "question", "text", "prompt", "instruction")
REFERENCE_NAMES = ("reference", "answer", "label", "target", "output")
ID_NAMES = ("id", "question_id", "item_id")
CHOICES_NAMES = ("choices", "options")

_NUMBER = re.compile(r"^[-+]?\$?\s*\d[\d,]*(\.\d+)?$|^[-+]?\.\d+$")


@dataclass(frozen=True)
class FieldMap:
    """Which column holds what. Unset names are guessed from common column names."""

    input: str | None = None
    reference: str | None = None
    id: str | None = None
    choices: str | None = None
    kind: Kind | None = None
    labels: tuple[str, ...] | None = None
    split: str = "test"


def load_exam(source: str | Path, fields: FieldMap | None = None, *, name: str | None = None,
              limit: int | None = None) -> Exam:
    """Read `source` (a file, a saved dataset dir, or `hf:NAME` for the hub) into an Exam."""
    fields = fields or FieldMap()
    label = str(source)
    rows = list(_read_rows(source, fields.split))
    if not rows:
        raise DataError("the exam has no items", path=label)
    items = _items_from_rows(rows, fields, label)  # kinds and label sets from the whole file, not a slice
    if limit is not None:
        items = items[:limit]
    exam_name = name or (Path(str(source)).stem if not str(source).startswith("hf:") else str(source)[3:])
    return Exam(name=exam_name, items=items, source=label)


def item_row(item: Item) -> dict[str, Any]:
    """An item as a row of Magister's own JSONL (kind and labels declared, meta flattened), which
    `load_exam` reads back to the same item."""
    return {"id": item.id, "input": item.input, "reference": item.reference, "kind": item.kind.value,
            **({"labels": item.labels} if item.labels else {}), **({"choices": item.choices} if item.choices else {}),
            **({"checklist": item.checklist} if item.checklist else {}), **item.meta}


def pick_fewshot(items: list[Item], k: int, seed: int = 0) -> list[Item]:
    """k worked examples, spread over the labels (classification) and kinds, reproducibly."""
    import random

    pool = list(items)
    random.Random(seed).shuffle(pool)
    groups: dict[str, list[Item]] = {}
    for item in pool:
        key = item.reference if item.kind is Kind.classification else item.kind.value
        groups.setdefault(key, []).append(item)
    chosen: list[Item] = []
    while len(chosen) < min(k, len(pool)):
        for group in groups.values():
            if group and len(chosen) < k:
                chosen.append(group.pop(0))
    return chosen


def _read_rows(source: str | Path, split: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, row) pairs; line numbers are 1-based file lines or row ordinals."""
    text = str(source)
    if text.startswith("hf:"):
        yield from _read_hf_hub(text[3:], split)
        return
    path = Path(text)
    if path.is_dir():
        yield from _read_hf_disk(path, split)
        return
    if not path.exists():
        raise DataError("no such file or directory", path=text)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        yield from _read_jsonl(path)
    elif suffix in (".csv", ".tsv"):
        yield from _read_csv(path, delimiter="\t" if suffix == ".tsv" else ",")
    elif suffix == ".parquet":
        yield from _read_parquet(path)
    else:
        raise DataError(f"unknown exam format '{suffix}': use .jsonl, .csv, .tsv, .parquet "
                        "or a saved Hugging Face dataset directory", path=text)


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in enumerate(_decode_lines(path), start=1):
        if not line.strip():
            continue
        row = parse_json_line(line, path, number)
        if not isinstance(row, dict):
            raise DataError(f"expected a JSON object, got {type(row).__name__}", path=str(path), line=number)
        yield number, row


def _read_csv(path: Path, delimiter: str) -> Iterator[tuple[int, dict[str, Any]]]:
    lines = _decode_lines(path)
    reader = csv.DictReader(io.StringIO("\n".join(lines)), delimiter=delimiter)
    header = reader.fieldnames or []
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise DataError(f"the header names column {repeated[0]!r} twice: rename one", path=str(path), line=1,
                        field=repeated[0])
    for row in reader:
        if None in row:
            raise DataError("more values than header columns", path=str(path), line=reader.line_num)
        if any(v is None for v in row.values()):
            raise DataError("fewer values than header columns", path=str(path), line=reader.line_num)
        yield reader.line_num, dict(row)


def _read_parquet(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError("reading Parquet needs pyarrow: pip install 'magister[data]'", path=str(path)) from None
    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several types for a corrupt file
        raise DataError(f"cannot read Parquet: {err}", path=str(path)) from None
    for number, row in enumerate(table.to_pylist(), start=1):
        yield number, row


def _import_datasets(label: str) -> Any:
    try:
        import datasets
    except ImportError:
        raise DataError("Hugging Face datasets need: pip install 'magister[data]'", path=label) from None
    return datasets


def _pick_split(data: Any, split: str, label: str) -> Any:
    if hasattr(data, "keys"):  # a DatasetDict
        if split not in data:
            raise DataError(f"no split '{split}'; the dataset has {sorted(data.keys())} (use --split)", path=label)
        return data[split]
    return data


def _read_hf_disk(path: Path, split: str) -> Iterator[tuple[int, dict[str, Any]]]:
    datasets = _import_datasets(str(path))
    try:
        data = datasets.load_from_disk(str(path))
    except FileNotFoundError as err:
        raise DataError(f"not a saved Hugging Face dataset ({err})", path=str(path)) from None
    except Exception as err:  # noqa: BLE001 - bad JSON metadata, a truncated Arrow file: pyarrow and json errors
        raise DataError(f"a damaged saved dataset ({type(err).__name__}: {str(err)[:200]})", path=str(path)) from None
    for number, row in enumerate(_pick_split(data, split, str(path)), start=1):
        yield number, row


def _read_hf_hub(name: str, split: str) -> Iterator[tuple[int, dict[str, Any]]]:
    datasets = _import_datasets(f"hf:{name}")
    try:
        data = datasets.load_dataset(name, split=split)
    except Exception as err:  # network, missing dataset or split
        raise DataError(f"cannot load dataset from the hub: {err}", path=f"hf:{name}") from None
    for number, row in enumerate(data, start=1):
        yield number, row


def _column(rows: list[tuple[int, dict[str, Any]]], given: str | None, guesses: tuple[str, ...],
            field: str, label: str, required: bool) -> str | None:
    """The column for a field: the one the mapping names, or the first common name found in the rows."""
    first_line, first = rows[0]
    present = set(first) if required else {key for _, row in rows for key in row}
    if given is not None:
        if given not in present:
            raise DataError(f"no column '{given}'; columns are {sorted(present)}", path=label,
                            line=first_line, field=given)
        return given
    for guess in guesses:
        if guess in present:
            return guess
    if required:
        flag = "--" + field.replace("_", "-")
        raise DataError(f"cannot tell which column is the {field}; name it with {flag} "
                        f"(columns are {sorted(present)})", path=label, line=first_line)
    return None


def _text(value: Any, label: str, line: int, field: str) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise DataError("missing or empty value", path=label, line=line, field=field)
    if isinstance(value, float) and not math.isfinite(value):  # JSON NaN, a Parquet null: not the text "nan"
        raise DataError(f"missing value ({value})", path=label, line=line, field=field)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise DataError(f"expected text or a number, got {type(value).__name__}", path=label, line=line,
                        field=field)
    return str(value)


def _choices(value: Any, label: str, line: int, field: str) -> list[str]:
    if isinstance(value, str):  # CSV cells hold a JSON list
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise DataError("expected a list of options (a JSON list in CSV)", path=label, line=line,
                            field=field) from None
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, list) or not value or not all(isinstance(v, (str, int, float)) for v in value):
        raise DataError("expected a non-empty list of options", path=label, line=line, field=field)
    if field != "labels" and len(value) > 26:
        raise DataError(f"{len(value)} options; multiple choice takes at most 26 (A-Z)", path=label, line=line,
                        field=field)
    return [str(v) for v in value]


def numeric_reference(text: str) -> str | None:
    """The number in a numeric reference (`#### 1,234` -> `1234`), or None if it is not one."""
    candidate = text.rsplit("####", 1)[1] if "####" in text else text
    candidate = candidate.strip()
    if not _NUMBER.match(candidate):
        return None
    return candidate.replace(",", "").replace("$", "").replace(" ", "").lstrip("+")


def _choice_letter(reference: str, raw: Any, choices: list[str], label: str, line: int, field: str) -> str:
    options = letters(len(choices))
    ref = reference.strip()
    if ref.upper() in options and len(ref) == 1:
        return ref.upper()
    if ref in choices:
        return options[choices.index(ref)]
    if isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw < len(choices):
        return options[raw]  # a 0-based index, as many datasets store it
    raise DataError(f"reference '{ref}' is neither a letter {options[0]}-{options[-1]}, an option's text, "
                    "nor an option index", path=label, line=line, field=field)


def _infer_kind(references: list[str], has_choices: bool) -> Kind:
    if has_choices:
        return Kind.multiple_choice
    numbers = [numeric_reference(r) for r in references]
    distinct = set(references)
    if all(n is not None for n in numbers):
        looks_like_labels = len(distinct) <= 10 and all(n is not None and n.lstrip("-").isdigit() for n in numbers)
        if not looks_like_labels or any("####" in r for r in references):
            return Kind.numeric
    if len(distinct) <= max(2, min(50, len(references) // 3)):
        return Kind.classification
    return Kind.free_form


def _items_from_rows(rows: list[tuple[int, dict[str, Any]]], fields: FieldMap, label: str) -> list[Item]:
    input_col = _column(rows, fields.input, INPUT_NAMES, "input", label, required=True)
    ref_col = _column(rows, fields.reference, REFERENCE_NAMES, "reference", label, required=True)
    id_col = _column(rows, fields.id, ID_NAMES, "id", label, required=False)
    choices_col = _column(rows, fields.choices, CHOICES_NAMES, "choices", label, required=False)
    assert input_col is not None and ref_col is not None
    used = {input_col, ref_col, id_col, choices_col}

    parsed: list[tuple[int, str, str, str, Any, list[str] | None, dict[str, Any]]] = []
    seen: dict[str, int] = {}
    for ordinal, (line, row) in enumerate(rows):
        for col in (input_col, ref_col):
            if col not in row:
                raise DataError("missing field", path=label, line=line, field=col)
        text = _text(row[input_col], label, line, input_col)
        raw_ref = row[ref_col]
        reference = _text(raw_ref, label, line, ref_col)
        item_id = _text(row[id_col], label, line, id_col) if id_col else str(ordinal)
        if item_id in seen:
            raise DataError(f"duplicate id '{item_id}' (first on line {seen[item_id]})", path=label, line=line,
                            field=id_col or "id")
        seen[item_id] = line
        choices = None
        if choices_col is not None and row.get(choices_col) not in (None, ""):
            choices = _choices(row[choices_col], label, line, choices_col)
        meta = {k: v for k, v in row.items() if k not in used and _jsonable(v)}
        parsed.append((line, item_id, text, reference, raw_ref, choices, meta))

    row_kinds = [_row_kind(rows[i][1], label, p[0]) for i, p in enumerate(parsed)]
    undeclared = [p[3] for p, k in zip(parsed, row_kinds) if k is None]
    if fields.kind is not None:
        exam_kind = fields.kind
    elif fields.labels:
        exam_kind = Kind.classification
    else:
        exam_kind = _infer_kind(undeclared, any(p[5] for p, k in zip(parsed, row_kinds) if k is None)) \
            if undeclared else Kind.free_form
    kinds = [k or exam_kind for k in row_kinds]
    class_refs = sorted({p[3] for p, k in zip(parsed, kinds) if k is Kind.classification})
    exam_labels = list(fields.labels) if fields.labels else class_refs

    items = []
    for (line, item_id, text, reference, raw_ref, choices, meta), kind, (_, row) in zip(parsed, kinds, rows):
        labels = None
        if kind is Kind.multiple_choice:
            if not choices:
                raise DataError("a multiple-choice item needs options", path=label, line=line,
                                field=choices_col or "choices")
            reference = _choice_letter(reference, raw_ref, choices, label, line, ref_col)
        elif kind is Kind.numeric:
            number = numeric_reference(reference)
            if number is None:
                raise DataError(f"expected a number (or '#### N'), got '{reference[:40]}'", path=label, line=line,
                                field=ref_col)
            if number != reference:
                meta = {**meta, "solution": reference}
            reference = number
        elif kind is Kind.classification:
            labels = _choices(row["labels"], label, line, "labels") if row.get("labels") else exam_labels
            if reference not in labels:
                raise DataError(f"label '{reference}' is not in the label set {labels}", path=label, line=line,
                                field=ref_col)
        checklist = meta.get("checklist")
        if checklist is not None and not (isinstance(checklist, list) and all(isinstance(q, str) for q in checklist)):
            raise DataError("a checklist is a list of yes/no questions (strings)", path=label, line=line,
                            field="checklist")
        meta = {k: v for k, v in meta.items() if k not in ("kind", "labels", "checklist")}
        items.append(Item(id=item_id, input=text, reference=reference, kind=kind, labels=labels,
                          choices=choices if kind is Kind.multiple_choice else None, checklist=checklist or None,
                          meta=meta))
    return items


def _row_kind(row: dict[str, Any], label: str, line: int) -> Kind | None:
    """A row may declare its own kind (Magister's native JSONL); most files leave it to inference."""
    value = row.get("kind")
    if value in (None, ""):
        return None
    try:
        return Kind(value)
    except ValueError:
        raise DataError(f"unknown kind '{value}'; use one of {[k.value for k in Kind]}", path=label, line=line,
                        field="kind") from None


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
