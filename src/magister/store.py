"""The SQLite store: runs, exams, every request and response (the response cache), answers, grades.

One database file in the user directory (`MAGISTER_HOME`, or the platform's user-data
dir), in WAL mode so a reader (`magister runs`) never blocks a run. Each batch of answers
is written in one transaction together with its responses and grades, so a crash or
Ctrl-C loses at most the batch in flight and a resumed run picks up from there.
Schema changes are numbered migration functions, applied in order (PRAGMA user_version).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from magister.errors import ConfigError
from magister.types import Answer, Completion, Exam, Grade, Request


def user_dir() -> Path:
    """Where Magister keeps its database and trained models: $MAGISTER_HOME or the user-data dir."""
    env = os.environ.get("MAGISTER_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("magister", appauthor=False))


def _execute_all(db: sqlite3.Connection, script: str) -> None:
    """Run `;`-separated statements one by one (executescript would commit the migration half-way)."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _m001_initial(db: sqlite3.Connection) -> None:
    _execute_all(db, """
        CREATE TABLE exams (
            version TEXT PRIMARY KEY, name TEXT NOT NULL, source TEXT, body TEXT NOT NULL, created_at REAL);
        CREATE TABLE runs (
            id TEXT PRIMARY KEY, created_at REAL NOT NULL, finished_at REAL, status TEXT NOT NULL,
            exam_name TEXT NOT NULL, exam_version TEXT NOT NULL REFERENCES exams(version),
            model TEXT NOT NULL, grader TEXT NOT NULL, n_items INTEGER NOT NULL,
            fingerprint TEXT NOT NULL, config TEXT NOT NULL, summary TEXT);
        CREATE INDEX runs_fingerprint ON runs(fingerprint, status);
        CREATE TABLE responses (
            key TEXT PRIMARY KEY, backend TEXT NOT NULL, model TEXT NOT NULL,
            request TEXT NOT NULL, completion TEXT NOT NULL, created_at REAL NOT NULL);
        CREATE TABLE answers (
            run_id TEXT NOT NULL REFERENCES runs(id), item_id TEXT NOT NULL, position INTEGER NOT NULL,
            request_key TEXT NOT NULL REFERENCES responses(key), text TEXT NOT NULL, choice_logprobs TEXT,
            prompt_tokens INTEGER, completion_tokens INTEGER, latency_s REAL, cached INTEGER NOT NULL,
            created_at REAL NOT NULL, PRIMARY KEY (run_id, item_id));
        CREATE TABLE grades (
            run_id TEXT NOT NULL REFERENCES runs(id), item_id TEXT NOT NULL, grader TEXT NOT NULL,
            score REAL NOT NULL, correct INTEGER, extracted TEXT, parsed INTEGER NOT NULL,
            rationale TEXT, raw TEXT, PRIMARY KEY (run_id, item_id, grader));
    """)


def _m002_items_labels_teach(db: sqlite3.Connection) -> None:
    """Items in their own table (paged, searchable views without loading a whole exam), human labels of
    answers (who said right or wrong, and when), and the teaching runs a viewer can list."""
    _execute_all(db, """
        CREATE TABLE items (
            exam_version TEXT NOT NULL REFERENCES exams(version), item_id TEXT NOT NULL, position INTEGER NOT NULL,
            input TEXT NOT NULL, reference TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (exam_version, item_id));
        CREATE INDEX answers_position ON answers(run_id, position);
        CREATE TABLE labels (
            run_id TEXT NOT NULL REFERENCES runs(id), item_id TEXT NOT NULL, who TEXT NOT NULL,
            correct INTEGER NOT NULL, created_at REAL NOT NULL, PRIMARY KEY (run_id, item_id, who));
        CREATE TABLE teach_runs (
            name TEXT PRIMARY KEY, path TEXT NOT NULL, created_at REAL NOT NULL)
    """)
    for (body,) in db.execute("SELECT body FROM exams").fetchall():
        _put_items(db, Exam.model_validate_json(body))


def _put_items(db: sqlite3.Connection, exam: Exam) -> None:
    version = exam.version  # a hash of the whole exam: once, not per item
    db.executemany("INSERT OR IGNORE INTO items (exam_version, item_id, position, input, reference, body) "
                   "VALUES (?,?,?,?,?,?)",
                   [(version, item.id, k, item.input, item.reference, item.model_dump_json())
                    for k, item in enumerate(exam.items)])


def _m003_leases(db: sqlite3.Connection) -> None:
    """Leases: which worker is answering which item of a run, so two processes running the same exam at
    once never ask the same item twice."""
    _execute_all(db, """
        CREATE TABLE leases (
            run_id TEXT NOT NULL REFERENCES runs(id), item_id TEXT NOT NULL, owner TEXT NOT NULL,
            expires_at REAL NOT NULL, PRIMARY KEY (run_id, item_id))
    """)


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_m001_initial, _m002_items_labels_teach, _m003_leases]
LEASE_S = 300.0  # a worker on another machine that stops renewing loses its items after this long


def _owner_alive(owner: str) -> bool:
    """Whether the worker that holds a lease still runs (known only for workers on this machine)."""
    host, _, pid = owner.partition(":")
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid.split(":")[0]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return True


@dataclass(frozen=True)
class RunRow:
    id: str
    created_at: float
    finished_at: float | None
    status: str  # running | interrupted | failed | incomplete (some items failed) | finished
    exam_name: str
    exam_version: str
    model: str
    grader: str
    n_items: int
    config: dict[str, Any]
    summary: dict[str, Any] | None


class Store:
    """All reads and writes of the database go through here."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else user_dir() / "magister.db"
        if self.path.parent.exists() and not self.path.parent.is_dir():
            raise ConfigError(f"{self.path.parent} is a file, not a folder: point MAGISTER_HOME at a folder")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if str(self.path) != ":memory:" and not self.path.exists():  # responses may hold private data: owner only
            self.path.touch(mode=0o600)
        self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        deadline = time.monotonic() + 30
        while True:  # switching a new file to WAL takes an exclusive lock and does not wait for it by itself
            try:
                self.db.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as error:
                if "locked" in str(error) and time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                if "locked" in str(error):
                    raise ConfigError(f"{self.path}: {error} (another process holds it; try again)") from None
                raise ConfigError(f"{self.path}: {error} (not a Magister database, or a damaged one; move it aside "
                                  "and Magister starts a new one)") from None
            except sqlite3.DatabaseError as error:
                raise ConfigError(f"{self.path}: {error} (not a Magister database, or a damaged one; move it aside "
                                  "and Magister starts a new one)") from None
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    def _migrate(self) -> None:
        """Apply the migrations this database lacks, each reading the version inside its own write
        transaction: processes opening a new database at once migrate it once, in turn."""
        while True:
            with self.transaction():
                version = self.db.execute("PRAGMA user_version").fetchone()[0]
                if version >= len(MIGRATIONS):
                    return
                MIGRATIONS[version](self.db)
                self.db.execute(f"PRAGMA user_version = {version + 1}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()

    # -- response cache ---------------------------------------------------------------

    def cached(self, keys: Sequence[str]) -> dict[str, Completion]:
        """The stored completions for those keys that have one."""
        found: dict[str, Completion] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):
            chunk = unique[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for key, body in self.db.execute(f"SELECT key, completion FROM responses WHERE key IN ({marks})", chunk):
                found[key] = Completion.model_validate_json(body)
        return found

    def put_responses(self, backend: str, model: str,
                      rows: Iterable[tuple[str, Request, Completion]]) -> None:
        """Store responses (call inside a transaction). The `cached` flag is never stored as true."""
        now = time.time()
        self.db.executemany(
            "INSERT OR REPLACE INTO responses (key, backend, model, request, completion, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(key, backend, model, request.model_dump_json(), completion.model_copy(update={"cached": False})
              .model_dump_json(), now) for key, request, completion in rows])

    # -- exams and runs ---------------------------------------------------------------

    def put_exam(self, exam: Exam) -> None:
        """Store an exam once per version, with its items (call inside a transaction)."""
        version = exam.version
        if self.db.execute("SELECT 1 FROM exams WHERE version = ?", (version,)).fetchone():
            return
        self.db.execute("INSERT INTO exams (version, name, source, body, created_at) VALUES (?,?,?,?,?)",
                        (version, exam.name, exam.source, exam.model_dump_json(), time.time()))
        _put_items(self.db, exam)

    def exam(self, version: str) -> Exam:
        row = self.db.execute("SELECT body FROM exams WHERE version = ?", (version,)).fetchone()
        if row is None:
            raise KeyError(version)
        return Exam.model_validate_json(row[0])

    def create_run(self, exam: Exam, model: str, grader: str, n_items: int, fingerprint: str,
                   config: dict[str, Any]) -> str:
        with self.transaction():
            return self._insert_run(exam, model, grader, n_items, fingerprint, config)

    def _insert_run(self, exam: Exam, model: str, grader: str, n_items: int, fingerprint: str,
                    config: dict[str, Any]) -> str:
        """A new run with its exam (call inside a transaction)."""
        run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        self.put_exam(exam)
        self.db.execute(
            "INSERT INTO runs (id, created_at, status, exam_name, exam_version, model, grader, n_items, "
            "fingerprint, config) VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?)",
            (run_id, time.time(), exam.name, exam.version, model, grader, n_items, fingerprint,
             json.dumps(config, sort_keys=True)))
        return run_id

    def open_run(self, exam: Exam, model: str, grader: str, fingerprint: str, config: dict[str, Any]) -> str:
        """The unfinished run with this fingerprint, or a new one: decided in one write transaction, so
        processes starting the same exam at once share one run."""
        with self.transaction():
            found = self.resumable_run(fingerprint)
            if found is not None:
                return found
            return self._insert_run(exam, model, grader, len(exam.items), fingerprint, config)

    def claim(self, run_id: str, item_ids: Sequence[str], owner: str) -> list[str]:
        """Lease the items of a batch that no live worker holds and nobody has answered; returns them."""
        now = time.time()
        marks = ",".join("?" * len(item_ids))
        with self.transaction():
            answered = {r[0] for r in self.db.execute(
                f"SELECT item_id FROM answers WHERE run_id = ? AND item_id IN ({marks})", (run_id, *item_ids))}
            held = {item: (who, expires) for item, who, expires in self.db.execute(
                f"SELECT item_id, owner, expires_at FROM leases WHERE run_id = ? AND item_id IN ({marks})",
                (run_id, *item_ids))}
            mine = []
            for item in item_ids:
                if item in answered:
                    continue
                who, expires = held.get(item, (owner, 0.0))
                if who != owner and expires > now and _owner_alive(who):
                    continue
                mine.append(item)
            self.db.executemany("INSERT OR REPLACE INTO leases (run_id, item_id, owner, expires_at) VALUES (?,?,?,?)",
                                [(run_id, item, owner, now + LEASE_S) for item in mine])
        return mine

    def release(self, run_id: str, owner: str) -> None:
        """Give back every lease this worker holds on a run (its answers are stored, or it stops)."""
        with self.transaction():
            self.db.execute("DELETE FROM leases WHERE run_id = ? AND owner = ?", (run_id, owner))

    def resumable_run(self, fingerprint: str) -> str | None:
        """The latest unfinished run (running, interrupted, failed or incomplete) with this fingerprint (same exam, model,
        grader, settings)."""
        row = self.db.execute("SELECT id FROM runs WHERE fingerprint = ? AND status IN ('running', 'interrupted', "
                              "'failed', 'incomplete') "
                              "ORDER BY created_at DESC LIMIT 1", (fingerprint,)).fetchone()
        return row[0] if row else None

    def finish_run(self, run_id: str, summary: dict[str, Any], status: str = "finished") -> None:
        """Close a run with its summary; 'incomplete' when some items failed (the same command retries them)."""
        with self.transaction():
            self.db.execute("UPDATE runs SET status = ?, finished_at = ?, summary = ? WHERE id = ?",
                            (status, time.time(), json.dumps(summary), run_id))

    def update_summary(self, run_id: str, extra: dict[str, Any]) -> None:
        """Add keys to a finished run's summary (e.g. the anchors' estimate of the full-exam accuracy)."""
        with self.transaction():
            row = self.db.execute("SELECT summary FROM runs WHERE id = ?", (run_id,)).fetchone()
            summary = {**(json.loads(row[0]) if row and row[0] else {}), **extra}
            self.db.execute("UPDATE runs SET summary = ? WHERE id = ?", (json.dumps(summary), run_id))

    def mark_run(self, run_id: str, status: str) -> None:
        """An unfinished run's status: 'interrupted' (Ctrl-C) or 'failed' (an error); both resume."""
        with self.transaction():
            self.db.execute("UPDATE runs SET status = ? WHERE id = ? AND status != 'finished'", (status, run_id))

    def run(self, run_id: str) -> RunRow:
        """The run with this id, or the one run whose id starts or ends with it (KeyError if none or several)."""
        exact = self.runs(run_id=run_id)
        if exact:
            return exact[0]
        ids = [r[0] for r in self.db.execute("SELECT id FROM runs")
               if r[0].startswith(run_id) or r[0].endswith(run_id)] if run_id else []
        if len(ids) != 1:
            raise KeyError(run_id if not ids else f"{run_id}: matches {len(ids)} runs ({', '.join(sorted(ids)[:3])} ...)"
                           "; give more of the id")
        return self.runs(run_id=ids[0])[0]

    def runs(self, run_id: str | None = None, exam: str | None = None, limit: int = 1000) -> list[RunRow]:
        sql = ("SELECT id, created_at, finished_at, status, exam_name, exam_version, model, grader, n_items, "
               "config, summary FROM runs")
        where, args = [], []
        if run_id is not None:
            where.append("id = ?")
            args.append(run_id)
        if exam is not None:
            where.append("exam_name = ?")
            args.append(exam)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC LIMIT ?"
        rows = self.db.execute(sql, [*args, limit]).fetchall()
        return [RunRow(*r[:9], config=json.loads(r[9]), summary=json.loads(r[10]) if r[10] else None) for r in rows]

    # -- answers and grades -----------------------------------------------------------

    def answered(self, run_id: str) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT item_id FROM answers WHERE run_id = ?", (run_id,))}

    def put_answers(self, run_id: str, rows: Iterable[tuple[int, Answer, Grade]]) -> None:
        """Store answers with their grades (call inside a transaction)."""
        now = time.time()
        rows = list(rows)
        self.db.executemany(
            "INSERT OR REPLACE INTO answers (run_id, item_id, position, request_key, text, choice_logprobs, "
            "prompt_tokens, completion_tokens, latency_s, cached, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            [(run_id, a.item_id, pos, a.request_key, a.text,
              json.dumps(a.choice_logprobs) if a.choice_logprobs is not None else None,
              a.prompt_tokens, a.completion_tokens, a.latency_s, int(a.cached), now) for pos, a, _ in rows])
        self.db.executemany(
            "INSERT OR REPLACE INTO grades (run_id, item_id, grader, score, correct, extracted, parsed, rationale, "
            "raw) VALUES (?,?,?,?,?,?,?,?,?)",
            [(run_id, g.item_id, g.grader, g.score, None if g.correct is None else int(g.correct), g.extracted,
              int(g.parsed), g.rationale, g.raw) for _, _, g in rows])

    def answers(self, run_id: str) -> list[tuple[Answer, Grade]]:
        """A run's answers with their grades, in exam order."""
        rows = self.db.execute(
            "SELECT a.item_id, a.text, a.choice_logprobs, a.prompt_tokens, a.completion_tokens, a.latency_s, "
            "a.cached, a.request_key, g.grader, g.score, g.correct, g.extracted, g.parsed, g.rationale, g.raw "
            "FROM answers a JOIN grades g ON g.run_id = a.run_id AND g.item_id = a.item_id "
            "WHERE a.run_id = ? ORDER BY a.position", (run_id,)).fetchall()
        return [(Answer(item_id=r[0], text=r[1], choice_logprobs=json.loads(r[2]) if r[2] else None,
                        prompt_tokens=r[3], completion_tokens=r[4], latency_s=r[5], cached=bool(r[6]),
                        request_key=r[7]),
                 Grade(item_id=r[0], grader=r[8], score=r[9], correct=None if r[10] is None else bool(r[10]),
                       extracted=r[11], parsed=bool(r[12]), rationale=r[13], raw=r[14])) for r in rows]

    # -- human labels and teaching runs --------------------------------------------------

    def put_label(self, run_id: str, item_id: str, correct: bool | None, who: str) -> None:
        """A person's verdict on one answer (None takes it back)."""
        with self.transaction():
            if correct is None:
                self.db.execute("DELETE FROM labels WHERE run_id = ? AND item_id = ? AND who = ?",
                                (run_id, item_id, who))
            else:
                self.db.execute("INSERT OR REPLACE INTO labels (run_id, item_id, who, correct, created_at) "
                                "VALUES (?,?,?,?,?)", (run_id, item_id, who, int(correct), time.time()))

    def labels(self, run_id: str) -> list[tuple[str, str, bool, float]]:
        """(item_id, who, correct, created_at) of every human label on a run, oldest first."""
        return [(r[0], r[1], bool(r[2]), r[3]) for r in self.db.execute(
            "SELECT item_id, who, correct, created_at FROM labels WHERE run_id = ? ORDER BY created_at", (run_id,))]

    def put_teach_run(self, name: str, path: Path) -> None:
        """Remember where a teaching run lives, so the viewer can list it."""
        with self.transaction():
            self.db.execute("INSERT OR REPLACE INTO teach_runs (name, path, created_at) VALUES (?,?,?)",
                            (name, str(Path(path).resolve()), time.time()))

    def teach_runs(self) -> list[tuple[str, Path, float]]:
        return [(r[0], Path(r[1]), r[2]) for r in
                self.db.execute("SELECT name, path, created_at FROM teach_runs ORDER BY created_at DESC")]

    def request(self, key: str) -> Request:
        row = self.db.execute("SELECT request FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise KeyError(key)
        return Request.model_validate_json(row[0])
