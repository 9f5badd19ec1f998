"""Sitting an exam on a pool of Ray actors (`--ray`): the same grades, the same cache, and no item lost or
asked twice when an actor or the driver dies. One local Ray for the module, two actors of half a CPU."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import sentiment_exam, write_jsonl
from magister.errors import ConfigError
from magister.models.base import load_model
from magister.sit import sit
from magister.store import Store

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # about 30 s: a Ray, actors, two `magister exam` processes


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A local Ray for the whole module; its address lets a `magister exam` subprocess join it."""
    started = not ray.is_initialized()
    if started:  # 4 logical CPUs: room for this process's actors and a killed driver's, not yet reaped
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    if started:
        ray.shutdown()


def pool(spec: str, actors: int = 2):  # noqa: ANN201
    from magister.models.ray_pool import RayPool

    return RayPool(spec, actors=actors, num_cpus=0.5)


def rows(db: Path, sql: str) -> list[tuple]:
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:  # not created yet
        return []


def grades(store: Store, run_id: str) -> dict[str, tuple]:
    return {a.item_id: (a.text, g.correct, g.score, g.extracted) for a, g in store.answers(run_id)}


def test_same_grades_and_cache_as_a_local_run(cluster: str, tmp_path: Path) -> None:
    exam = sentiment_exam(20)
    local_store, ray_store = Store(tmp_path / "local.db"), Store(tmp_path / "ray.db")
    local = sit(exam, load_model("mock:last"), local_store, progress=False)
    remote = pool("mock:last")
    try:
        assert remote.batch_size == 16 and remote.supports_choices and remote.identity() == "mock:last"
        assert remote.threads == ["1", "1"]  # half a CPU each: one compute thread each, not every core
        on_ray = sit(exam, remote, ray_store, progress=False)
        assert remote.sent == 20
        assert grades(ray_store, on_ray.run_id) == grades(local_store, local.run_id)
        assert (on_ray.n, on_ray.correct, on_ray.model_calls, on_ray.cache_hits) == (20, 10, 20, 0)
        again = sit(exam, remote, local_store, progress=False)  # the local run's cache answers the pool
        assert again.cache_hits == 20 and again.model_calls == 0 and remote.sent == 20
        assert local_store.run(again.run_id).config == local_store.run(local.run_id).config
    finally:
        remote.close()
        local_store.close()
        ray_store.close()


@pytest.mark.parametrize("when", ["in_flight", "between_batches"])
def test_a_killed_actor_is_replaced_and_its_chunk_sent_again(cluster: str, store: Store, when: str) -> None:
    """48 items, batches of 16 (8 per actor, 0.4 s each): actor 0 is killed while the second batch is out
    (or between the first and second batch); a fresh actor takes its chunk, and every item is asked and
    stored once."""
    exam = sentiment_exam(48)
    remote = pool("mock:first?delay=0.05")
    killer = None
    try:
        doomed = remote.actors[0]
        if when == "in_flight":
            def kill_when_second_batch_is_out() -> None:
                deadline = time.time() + 30
                while remote.sent <= 16 and time.time() < deadline:
                    time.sleep(0.005)
                ray.kill(doomed)

            killer = threading.Thread(target=kill_when_second_batch_is_out, daemon=True)
            killer.start()
            summary = sit(exam, remote, store, progress=False)
        else:
            summary = sit(exam, remote, store, progress=False,
                          on_batch=lambda done: ray.kill(doomed) if done == 16 else None)
        assert remote.replaced == 1 and doomed not in remote.actors
        assert remote.sent == 48 + 8  # the dead actor's chunk, once more
    finally:
        if killer is not None:
            killer.join(timeout=30)
        remote.close()
    assert (summary.n, summary.correct, summary.model_calls, summary.cache_hits) == (48, 24, 48, 0)
    assert rows(store.path, "SELECT COUNT(*) FROM responses") == [(48,)]
    assert rows(store.path, "SELECT COUNT(*), COUNT(DISTINCT item_id) FROM answers") == [(48, 48)]
    assert rows(store.path, "SELECT status FROM runs") == [("finished",)]


def test_a_killed_driver_resumes_with_the_same_command(cluster: str, tmp_path: Path, magister_home: Path) -> None:
    """A real `magister exam --ray` (joining this module's Ray through RAY_ADDRESS) killed with SIGKILL after
    its first batch; the same command finishes the run, asking only what was not stored."""
    n = 120
    path = write_jsonl(tmp_path / "exam.jsonl",
                       [{"id": f"q{i}", "text": f"item {i}", "label": ["neg", "pos"][i % 2]} for i in range(n)])
    command = [sys.executable, "-m", "magister.cli", "exam", str(path), "--model", "mock:first?delay=0.05",
               "--ray", "--actors", "2", "--actor-cpus", "0.5", "--json"]
    env = {**os.environ, "MAGISTER_HOME": str(magister_home), "RAY_ADDRESS": cluster}
    db = magister_home / "magister.db"
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 60
        while rows(db, "SELECT COUNT(*) FROM answers") < [(16,)] and time.time() < deadline:
            time.sleep(0.05)
            assert process.poll() is None, process.communicate()[1].decode()[-2000:]
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    [(saved,)] = rows(db, "SELECT COUNT(*) FROM answers")
    assert 16 <= saved < n

    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr[-2000:]
    summary = json.loads(again.stdout)
    assert summary["n"] == n and summary["resumed_items"] == saved and summary["accuracy"] == 0.5
    assert summary["model_calls"] + summary["cache_hits"] == n - saved
    assert rows(db, "SELECT COUNT(*), COUNT(DISTINCT item_id), COUNT(DISTINCT run_id) FROM answers") == [(n, n, 1)]
    assert rows(db, "SELECT COUNT(*) FROM responses") == [(n,)]  # one response per item, no stray
    assert rows(db, "SELECT status FROM runs") == [("finished",)]


def test_a_bad_spec_fails_as_it_would_locally(cluster: str) -> None:
    with pytest.raises(ConfigError, match="unknown mock mode 'nonsense'"):
        pool("mock:nonsense")


def test_without_ray_one_clear_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from magister.cli import app

    monkeypatch.setitem(sys.modules, "ray", None)  # as if it were not installed
    with pytest.raises(ConfigError, match=r"pip install 'magister\[ray\]'"):
        pool("mock:first")
    path = write_jsonl(tmp_path / "exam.jsonl", [{"id": "q0", "text": "item", "label": "neg"}])
    result = CliRunner().invoke(app, ["exam", str(path), "--model", "mock:first", "--ray"])
    assert result.exit_code == 1 and "Error: sitting on Ray needs ray: pip install 'magister[ray]'" in result.output
    assert "Traceback" not in result.output


def test_ray_is_imported_only_when_a_pool_is_made() -> None:
    code = "import sys, magister, magister.cli.main, magister.models.ray_pool; print('ray' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_teach_with_ray_sits_the_same_exams(cluster: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`ray: true` in a teach config: the students' exams go through the pool, with the same grades."""
    pytest.importorskip("peft")
    from magister.models import ray_pool

    pools: list[str] = []
    made = ray_pool.RayPool.__init__

    def counted(self, spec: str, *args, **kwargs) -> None:  # noqa: ANN001, ANN002, ANN003
        pools.append(spec)
        made(self, spec, *args, **kwargs)

    monkeypatch.setattr(ray_pool.RayPool, "__init__", counted)
    from helpers import NEGATIVE, POSITIVE, build_tiny_model, label_of, scripted
    from magister.models.mock import MockModel
    from magister.teach import Teach, TeachConfig, TrainConfig

    seed = write_jsonl(tmp_path / "seed.jsonl", [{"id": f"s{i}", "text": t, "label": label_of(t)}
                                                 for i, t in enumerate(POSITIVE[:4] + NEGATIVE[:4])])
    exam = write_jsonl(tmp_path / "exam.jsonl", [{"id": f"e{i}", "text": t, "label": label_of(t)}
                                                 for i, t in enumerate(POSITIVE[4:] + NEGATIVE[4:])])
    student = build_tiny_model(tmp_path / "student")
    scores = {}
    for on_ray in (False, True):
        config = TeachConfig(seed=seed, exam=exam, teacher="mock:teacher", student=str(student), rounds=1,
                             strategies=["similar"], verify_shots=2, out=tmp_path / f"run-{on_ray}", mine="seed",
                             select="last", ray=on_ray, train=TrainConfig(epochs=1, batch_size=4, learning_rate=1e-3))
        teach = Teach(config, models={"mock:teacher": MockModel("mock:teacher", respond=scripted)}, progress=False,
                      store=Store(tmp_path / f"store-{on_ray}.db"))
        rounds = teach.run()
        scores[on_ray] = [(r.round, r.exam["accuracy"], r.exam["correct"]) for r in rounds]
    assert scores[True] == scores[False] and len(scores[True]) == 2
    assert len(pools) >= 2 and all(spec.startswith("hf:") for spec in pools)  # round 0's and round 1's students
