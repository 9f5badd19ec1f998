"""Read JSONL files of labelled rows, with errors that name the file, line and field; write files atomically."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from magister.errors import DataError


def write_atomic(path: Path, text: str | bytes) -> Path:
    """Write `text` through a temporary file beside `path` and rename it: a kill never leaves half a file."""
    partial = path.with_name(path.name + ".partial")
    if isinstance(text, bytes):
        partial.write_bytes(text)
    else:
        partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
    return path


def write_json(path: Path, data: Any) -> Path:
    """`data` as indented JSON, atomically."""
    return write_atomic(path, json.dumps(data, indent=2, default=str))


def write_jsonl(path: Path, rows: Sequence[Any]) -> Path:
    """One JSON object a line, atomically."""
    return write_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def lines(text: str) -> list[str]:
    """Split on newlines only: str.splitlines() also breaks at U+0085, U+2028 and other separators
    that JSON and CSV allow inside a string."""
    return [line.removesuffix("\r") for line in text.split("\n")]


def read_lines(path: Path) -> list[str]:
    """A text file's lines: UTF-8 (a BOM is accepted), bad bytes a DataError naming the line."""
    data = path.read_bytes()
    if b"\x00" in data:  # a text file never holds one; it would reach the model as part of a prompt
        offset = data.index(b"\x00")
        raise DataError(f"holds a NUL byte (offset {offset}): not a text file, or damaged", path=str(path),
                        line=data[:offset].count(b"\n") + 1)
    try:
        return lines(data.decode("utf-8-sig"))
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise DataError(f"not valid UTF-8 (byte 0x{data[err.start]:02x} at offset {err.start})",
                        path=str(path), line=line) from None


def parse_json_line(line: str, path: str | Path, number: int) -> Any:
    """One line of JSONL parsed, or a DataError naming the file and line: bad JSON, nesting too deep for the
    parser, or an integer too long to convert are all the file's fault, never a traceback."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as error:
        raise DataError(f"malformed JSON: {error.msg} at column {error.colno}", path=str(path),
                        line=number) from None
    except RecursionError:
        raise DataError("JSON nested too deeply to read", path=str(path), line=number) from None
    except ValueError as error:  # e.g. an integer of more than 4,300 digits
        raise DataError(f"not readable JSON ({str(error)[:80]})", path=str(path), line=number) from None


def read_numbered(path: str | Path, needed: Sequence[str],
                  limit: int | None = None) -> list[tuple[int, dict[str, Any]]]:
    """JSONL rows that have every needed field (a clear error names the line and field otherwise)."""
    path = Path(path)
    if not path.is_file():
        raise DataError("no such file", path=str(path))
    rows = []
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        row = parse_json_line(line, path, number)
        if not isinstance(row, dict):
            raise DataError("expected a JSON object", path=str(path), line=number)
        for name in needed:
            if row.get(name) is None:
                raise DataError("missing", path=str(path), line=number, field=name)
        rows.append((number, row))
        if limit is not None and len(rows) >= limit:
            break
    if not rows:
        raise DataError("no rows in the file", path=str(path))
    return rows


def read_rows(path: str | Path, needed: Sequence[str], limit: int | None = None) -> list[dict[str, Any]]:
    """The rows of `read_numbered`, without their line numbers."""
    return [row for _, row in read_numbered(path, needed, limit)]


def finite(value: Any) -> Any:
    """The value with NaN and infinities (nested in dicts and lists too) as None: strict JSON has neither."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value
