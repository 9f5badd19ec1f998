"""The store: runs, exams, every request and response (the response cache), answers, grades.

By default one SQLite file in the user directory (`MAGISTER_HOME`, or the platform's user-data
dir), in WAL mode so a reader (`magister runs`) never blocks a run; for a team, one PostgreSQL
database shared by several machines (`MAGISTER_STORE=postgresql://...`, psycopg 3, imported only
then). Each batch of answers is written in one transaction together with its responses and
grades, so a crash or Ctrl-C loses at most the batch in flight and a resumed run picks up from
there. Schema changes are numbered migration functions, applied in order.

The SQL is written once, in words both databases read: `?` placeholders (the PostgreSQL
connection turns them into `%s`), `INSERT ... ON CONFLICT` instead of `INSERT OR REPLACE`,
DOUBLE PRECISION for floats. What differs is said in three places: how the schema's version is
recorded (PRAGMA user_version; a `schema_version` table), how a write transaction begins (BEGIN
IMMEDIATE; BEGIN and an advisory lock: one writer at a time on both, so a read-then-write such as
`claim` never races), and SQLite's instr(), which PostgreSQL gets from the first migration.
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
from typing import Any, NamedTuple, Protocol

from magister.errors import ConfigError, StoreError
from magister.types import Answer, Completion, Exam, Grade, Request


def user_dir() -> Path:
    """Where Magister keeps its database and trained models: $MAGISTER_HOME or the user-data dir."""
    env = os.environ.get("MAGISTER_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("magister", appauthor=False))


class Db(Protocol):
    """What the store's SQL runs on: a sqlite3 connection, or `_Postgres` that reads the same SQL."""

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Any: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> Any: ...

    def close(self) -> None: ...


POSTGRES_SCHEMES = ("postgresql://", "postgres://")
WRITE_LOCK = 0x6D616769737472  # the advisory lock a PostgreSQL write transaction takes ("magistr")
NO_LIMIT = 2**63 - 1  # LIMIT for "all rows" (SQLite's -1 and PostgreSQL's ALL are not each other's)


def _is_url(where: Path | str) -> bool:
    """Whether MAGISTER_STORE (or a Store argument) names a server rather than a SQLite file."""
    return isinstance(where, str) and "://" in where


def _passwords(url: str) -> set[str]:
    """The password of a URL as written and decoded, to keep out of a message that quotes the URL's pieces."""
    from urllib.parse import unquote, urlsplit

    try:
        password = urlsplit(url).password
    except ValueError:
        return set()
    return {password, unquote(password)} if password else set()


class _Postgres:
    """A psycopg connection that reads the store's SQL as sqlite3 does: `?` placeholders, `execute` and
    `executemany` on the connection, rows as tuples. In autocommit, so that `Store.transaction()` says BEGIN
    and COMMIT itself, as on SQLite. A server that cannot be reached is a StoreError naming the redacted URL."""

    dialect = "postgres"

    def __init__(self, url: str) -> None:
        from magister.models.base import redact_url

        self.shown = redact_url(url)  # the one form shown: the real URL goes to libpq alone
        self._secrets = _passwords(url)
        if not url.startswith(POSTGRES_SCHEMES):
            raise ConfigError(f"the store {self.shown} is neither a file path (SQLite) nor a postgresql:// URL")
        try:
            import psycopg
        except ImportError:
            raise ConfigError(f"the store {self.shown} needs psycopg: pip install 'magister[postgres]'") from None
        self._lost = psycopg.OperationalError
        timeout = {} if "connect_timeout=" in url else {"connect_timeout": 10}
        try:
            self.conn = psycopg.connect(url, autocommit=True, **timeout)
        except psycopg.Error as error:  # a bad URL, a server that is down, a refused login, no such database
            raise self._error("cannot be opened", error) from None

    def _error(self, what: str, error: Exception) -> StoreError:
        """One line: the URL redacted, and libpq's first line without the password, should it quote one."""
        line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        for secret in self._secrets:
            line = line.replace(secret, "REDACTED")
        return StoreError(f"the store {self.shown} {what}: {line}")

    @staticmethod
    def _sql(sql: str) -> str:
        return sql.replace("%", "%%").replace("?", "%s")  # the store's SQL has no `?` of its own

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        try:
            return self.conn.execute(self._sql(sql), params)
        except self._lost as error:
            raise self._error("could not be read or written", error) from None

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        try:
            self.conn.cursor().executemany(self._sql(sql), list(rows))
        except self._lost as error:
            raise self._error("could not be written", error) from None

    def close(self) -> None:
        self.conn.close()


def _is_postgres(db: Db) -> bool:
    return getattr(db, "dialect", "sqlite") == "postgres"


def _upsert(table: str, columns: Sequence[str], key: Sequence[str]) -> str:
    """An INSERT that replaces the row with the same key (SQLite >= 3.24 and PostgreSQL both read it)."""
    values = ", ".join(f"{column} = excluded.{column}" for column in columns if column not in key)
    return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
            f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {values}")


def _execute_all(db: Db, script: str) -> None:
    """Run `;`-separated statements one by one (executescript would commit the migration half-way)."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _m001_initial(db: Db) -> None:
    """The first schema. Floats are DOUBLE PRECISION (REAL affinity in SQLite; PostgreSQL's REAL is 4 bytes)."""
    _execute_all(db, """
        CREATE TABLE exams (
            version TEXT PRIMARY KEY, name TEXT NOT NULL, source TEXT, body TEXT NOT NULL, created_at DOUBLE PRECISION);
        CREATE TABLE runs (
            id TEXT PRIMARY KEY, created_at DOUBLE PRECISION NOT NULL, finished_at DOUBLE PRECISION,
            status TEXT NOT NULL, exam_name TEXT NOT NULL, exam_version TEXT NOT NULL REFERENCES exams(version),
            model TEXT NOT NULL, grader TEXT NOT NULL, n_items INTEGER NOT NULL,
            fingerprint TEXT NOT NULL, config TEXT NOT NULL, summary TEXT);
        CREATE INDEX runs_fingerprint ON runs(fingerprint, status);
        CREATE TABLE responses (
            key TEXT PRIMARY KEY, backend TEXT NOT NULL, model TEXT NOT NULL,
            request TEXT NOT NULL, completion TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL);
        CREATE TABLE answers (
            run_id TEXT NOT NULL REFERENCES runs(id), item_id TEXT NOT NULL, position INTEGER NOT NULL,
            request_key TEXT NOT NULL REFERENCES responses(key), text TEXT NOT NULL, choice_logprobs TEXT,
            prompt_tokens INTEGER, completion_tokens INTEGER, latency_s DOUBLE PRECISION, cached INTEGER NOT NULL,
            created_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (run_id, item_id));
        CREATE TABLE grades (
            run_id TEXT NOT NULL REFERENCES runs(id), item_id TEXT NOT NULL, grader TEXT NOT NULL,
            score DOUBLE PRECISION NOT NULL, correct INTEGER, extracted TEXT, parsed INTEGER NOT NULL,
            rationale TEXT, raw TEXT, PRIMARY KEY (run_id, item_id, grader));
    """)
    if _is_postgres(db):  # SQLite's instr(), which the searches use; strpos() inlined by the planner
        db.execute("CREATE FUNCTION instr(text, text) RETURNS integer LANGUAGE sql IMMUTABLE STRICT "
                   "AS 'SELECT strpos($1, $2)'")


def _m002_items_labels_teach(db: Db) -> None:
    """Items in their own table (paged, searchable views without loading a whole exam), human labels of
    answers (who said right or wrong, and when), and the teaching runs a viewer can list."""
    _execute_all(db, """
        CREATE TABLE items (
            exam_version TEXT NOT NULL REFERENCES exams(version), item_id TEXT NOT NULL, position INTEGER NOT NULL,
            input TEXT NOT NULL, reference TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (exam_version, item_id));
        CREATE INDEX answers_position ON answers(run_id, position);
        CREATE TABLE labels (
            run_id TEXT NOT NULL REFERENCES runs(id), item_id TEXT NOT NULL, who TEXT NOT NULL,
            correct INTEGER NOT NULL, created_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (run_id, item_id, who));
        CREATE TABLE teach_runs (
            name TEXT PRIMARY KEY, path TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL)
    """)
    for (body,) in db.execute("SELECT body FROM exams").fetchall():
        _put_items(db, Exam.model_validate_json(body))


def _put_items(db: Db, exam: Exam) -> None:
    version = exam.version  # a hash of the whole exam: once, not per item
    db.executemany("INSERT INTO items (exam_version, item_id, position, input, reference, body) "
                   "VALUES (?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                   [(version, item.id, k, item.input, item.reference, item.model_dump_json())
                    for k, item in enumerate(exam.items)])


def _m003_leases(db: Db) -> None:
    """Leases: which worker is answering which item of a run, so two processes running the same exam at
    once never ask the same item twice."""
    _execute_all(db, """
        CREATE TABLE leases (
            run_id TEXT NOT NULL REFERENCES runs(id), item_id TEXT NOT NULL, owner TEXT NOT NULL,
            expires_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (run_id, item_id))
    """)


MIGRATIONS: list[Callable[[Db], None]] = [_m001_initial, _m002_items_labels_teach, _m003_leases]
LEASE_S = 300.0  # a worker on another machine that stops renewing loses its items after this long


def _owner_alive(owner: str) -> bool:
    """Whether the worker that holds a lease (`host:pid:token`) still runs. Known only for a worker on this
    machine; one on another machine (a shared PostgreSQL store) is taken for alive, and its lease ends when it
    expires."""
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


class ItemRow(NamedTuple):
    """One answered item of a run as a table shows it: the item, the answer, its grade."""

    item_id: str
    input: str
    reference: str
    answer: str
    extracted: str | None
    correct: bool | None
    score: float
    parsed: bool
    position: int
    rationale: str | None


class ItemAnswer(NamedTuple):
    """One answer in full: the stored item (JSON text), the answer, its grade and its place in the run."""

    item_json: str
    text: str
    choice_logprobs: dict[str, float] | None
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_s: float | None
    cached: bool
    request_key: str
    grader: str
    score: float
    correct: bool | None
    extracted: str | None
    parsed: bool
    rationale: str | None
    raw: str | None
    position: int


class ScoreCounts(NamedTuple):
    """A run's totals over its graded answers."""

    n: int
    correct: int
    binary: int  # graded right or wrong (not only scored)
    unparsed: int
    mean_score: float | None


class PairedItem(NamedTuple):
    """One item two runs both answered: A's answer and grade, B's, and whether they differ."""

    item_id: str
    input: str | None
    reference: str | None
    a_answer: str
    a_correct: bool | None
    a_score: float
    b_answer: str
    b_correct: bool | None
    b_score: float
    discordant: bool


_ITEM_JOIN = ("FROM answers a JOIN grades g ON g.run_id = a.run_id AND g.item_id = a.item_id "
              "JOIN items i ON i.exam_version = ? AND i.item_id = a.item_id")
_ITEM_COLUMNS = ("a.item_id, i.input, i.reference, a.text, g.extracted, g.correct, g.score, g.parsed, "
                 "a.position, g.rationale")
_PAIRED_JOIN = ("FROM grades ga JOIN grades gb ON gb.run_id = ? AND gb.item_id = ga.item_id "
                "JOIN answers aa ON aa.run_id = ga.run_id AND aa.item_id = ga.item_id "
                "JOIN answers ab ON ab.run_id = gb.run_id AND ab.item_id = gb.item_id "
                "LEFT JOIN items i ON i.exam_version = ? AND i.item_id = ga.item_id WHERE ga.run_id = ?")
_DISCORDANT = "(coalesce(ga.correct, ga.score) != coalesce(gb.correct, gb.score))"


def _item_filters(run_id: str, wrong: bool, unparsed: bool, label: str | None, q: str | None,
                  positions: Sequence[int] | None) -> tuple[str, list[Any]]:
    """The WHERE clause (and its arguments) that picks a run's items by the viewer's filters."""
    where, args = ["a.run_id = ?"], [run_id]
    if wrong:
        where.append("(g.correct = 0 OR (g.correct IS NULL AND g.score < 0.5))")
    if unparsed:
        where.append("g.parsed = 0")
    if label:
        where.append("i.reference = ?")
        args.append(label)
    if q:
        where.append("(instr(lower(i.input), lower(?)) > 0 OR instr(lower(a.text), lower(?)) > 0 "
                     "OR a.item_id = ?)")
        args += [q, q, q]
    if positions is not None:
        where.append(f"a.position IN ({','.join('?' * len(positions))})")
        args += list(positions)
    return " AND ".join(where), args


class Store:
    """All reads and writes of the database go through here."""

    def __init__(self, path: Path | str | None = None) -> None:
        """The store at `path`: a SQLite file (':memory:' for one in memory) or a postgresql:// URL (any libpq
        URI, e.g. `postgresql://me@/magister?host=/run/postgresql` for a Unix socket). By default
        $MAGISTER_STORE, else magister.db in the user directory."""
        where = path if path is not None else os.environ.get("MAGISTER_STORE") or user_dir() / "magister.db"
        self.damaged_responses = 0  # cache rows that could not be read (treated as misses), for the run's summary
        self.db: Db
        if _is_url(where):
            self.path: Path | None = None  # a server's store has no file
            self.db = _Postgres(str(where))
            self.shown = self.db.shown  # what a message names: the path, or the URL without its secrets
        else:
            self.path = Path(where).expanduser()
            self.shown = str(self.path)
            self.db = self._open_sqlite(self.path)
        self.postgres = _is_postgres(self.db)
        self._migrate()

    @staticmethod
    def _open_sqlite(path: Path) -> sqlite3.Connection:
        if path.parent.exists() and not path.parent.is_dir():
            raise ConfigError(f"{path.parent} is a file, not a folder: point MAGISTER_HOME at a folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        if str(path) != ":memory:" and not path.exists():  # responses may hold private data: owner only
            path.touch(mode=0o600)
        db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        deadline = time.monotonic() + 30
        while True:  # switching a new file to WAL takes an exclusive lock and does not wait for it by itself
            try:
                db.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as error:
                if "locked" in str(error) and time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                if "locked" in str(error):
                    raise ConfigError(f"{path}: {error} (another process holds it; try again)") from None
                raise ConfigError(f"{path}: {error} (not a Magister database, or a damaged one; move it aside "
                                  "and Magister starts a new one)") from None
            except sqlite3.DatabaseError as error:
                raise ConfigError(f"{path}: {error} (not a Magister database, or a damaged one; move it aside "
                                  "and Magister starts a new one)") from None
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        return db

    def _migrate(self) -> None:
        """Apply the migrations this database lacks, each reading the version inside its own write
        transaction: processes opening a new database at once migrate it once, in turn."""
        while True:
            with self.transaction():
                if self.postgres:
                    self.db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                                    "applied_at DOUBLE PRECISION NOT NULL)")
                version = self.schema_version()
                if version >= len(MIGRATIONS):
                    return
                MIGRATIONS[version](self.db)
                if self.postgres:
                    self.db.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                                    (version + 1, time.time()))
                else:
                    self.db.execute(f"PRAGMA user_version = {version + 1}")

    def schema_version(self) -> int:
        """How many migrations this database has: PRAGMA user_version in SQLite, a row per migration in
        PostgreSQL's `schema_version` table."""
        if self.postgres:
            return self.db.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    @contextmanager
    def transaction(self) -> Iterator[Db]:
        """One write transaction, one writer at a time: SQLite's BEGIN IMMEDIATE, or in PostgreSQL a transaction
        that first takes the store's advisory lock (released at COMMIT or ROLLBACK, or when a client dies)."""
        self.db.execute("BEGIN" if self.postgres else "BEGIN IMMEDIATE")
        try:
            if self.postgres:
                self.db.execute("SELECT pg_advisory_xact_lock(?)", (WRITE_LOCK,))
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
                try:
                    found[key] = Completion.model_validate_json(body)
                except ValueError:  # a damaged row (not JSON, or not a completion) is a miss: asked again
                    self.damaged_responses += 1
        return found

    def put_responses(self, backend: str, model: str,
                      rows: Iterable[tuple[str, Request, Completion]]) -> None:
        """Store responses (call inside a transaction). The `cached` flag is never stored as true."""
        now = time.time()
        self.db.executemany(
            _upsert("responses", ("key", "backend", "model", "request", "completion", "created_at"), ("key",)),
            [(key, backend, model, request.model_dump_json(), completion.model_copy(update={"cached": False})
              .model_dump_json(), now) for key, request, completion in rows])

    def response_json(self, key: str) -> tuple[str, str] | None:
        """The stored request and completion under this key, as JSON text (None if there is none)."""
        return self.db.execute("SELECT request, completion FROM responses WHERE key = ?", (key,)).fetchone()

    def responses_containing(self, text: str) -> Iterator[tuple[str, str]]:
        """(request, completion) as JSON text of every stored response whose request contains `text`, read lazily."""
        return self.db.execute("SELECT request, completion FROM responses WHERE instr(request, ?) > 0", (text,))

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
            self.db.executemany(_upsert("leases", ("run_id", "item_id", "owner", "expires_at"), ("run_id", "item_id")),
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

    # Names are sorted here, not by ORDER BY: PostgreSQL sorts by the database's collation, SQLite by code point.

    def exam_names(self) -> list[str]:
        """The names of the exams that have runs, in alphabetical order."""
        return sorted(r[0] for r in self.db.execute("SELECT DISTINCT exam_name FROM runs"))

    def model_names(self) -> list[str]:
        """The models that have runs, in alphabetical order."""
        return sorted(r[0] for r in self.db.execute("SELECT DISTINCT model FROM runs"))

    def references(self, exam_version: str) -> list[str]:
        """The distinct reference answers of an exam version's items, sorted (a classification exam's labels)."""
        return sorted(r[0] for r in self.db.execute("SELECT DISTINCT reference FROM items WHERE exam_version = ?",
                                                    (exam_version,)))

    # -- answers and grades -----------------------------------------------------------

    def answered(self, run_id: str) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT item_id FROM answers WHERE run_id = ?", (run_id,))}

    def put_answers(self, run_id: str, rows: Iterable[tuple[int, Answer, Grade]]) -> None:
        """Store answers with their grades (call inside a transaction)."""
        now = time.time()
        rows = list(rows)
        self.db.executemany(
            _upsert("answers", ("run_id", "item_id", "position", "request_key", "text", "choice_logprobs",
                                "prompt_tokens", "completion_tokens", "latency_s", "cached", "created_at"),
                    ("run_id", "item_id")),
            [(run_id, a.item_id, pos, a.request_key, a.text,
              json.dumps(a.choice_logprobs) if a.choice_logprobs is not None else None,
              a.prompt_tokens, a.completion_tokens, a.latency_s, int(a.cached), now) for pos, a, _ in rows])
        self.db.executemany(
            _upsert("grades", ("run_id", "item_id", "grader", "score", "correct", "extracted", "parsed", "rationale",
                               "raw"), ("run_id", "item_id", "grader")),
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

    def answer_count(self, run_id: str) -> int:
        """How many items a run has answered."""
        return self.db.execute("SELECT count(*) FROM answers WHERE run_id = ?", (run_id,)).fetchone()[0]

    def has_answer(self, run_id: str, item_id: str) -> bool:
        """Whether a run has answered this item."""
        return self.db.execute("SELECT 1 FROM answers WHERE run_id = ? AND item_id = ?",
                               (run_id, item_id)).fetchone() is not None

    def grade_values(self, run_id: str) -> dict[str, tuple[bool | None, float]]:
        """item_id -> (correct, score) of every grade of a run."""
        return {r[0]: (None if r[1] is None else bool(r[1]), r[2]) for r in self.db.execute(
            "SELECT item_id, correct, score FROM grades WHERE run_id = ?", (run_id,))}

    def score_counts(self, run_id: str) -> ScoreCounts:
        """A run's answers, how many were right, graded right or wrong, unparsed, and the mean score."""
        counts = self.db.execute(
            "SELECT count(*), sum(CASE WHEN g.correct = 1 THEN 1 ELSE 0 END), count(g.correct), "
            "sum(CASE WHEN g.parsed = 0 THEN 1 ELSE 0 END), avg(g.score) "
            "FROM answers a JOIN grades g ON g.run_id = a.run_id AND g.item_id = a.item_id WHERE a.run_id = ?",
            (run_id,)).fetchone()
        return ScoreCounts(counts[0], counts[1] or 0, counts[2] or 0, counts[3] or 0, counts[4])

    def count_items(self, run_id: str, exam_version: str, *, wrong: bool = False, unparsed: bool = False,
                    label: str | None = None, q: str | None = None) -> int:
        """How many of a run's answered items pass the filters of `items`."""
        where, args = _item_filters(run_id, wrong, unparsed, label, q, None)
        return self.db.execute(f"SELECT count(*) {_ITEM_JOIN} WHERE {where}", [exam_version, *args]).fetchone()[0]

    def items(self, run_id: str, exam_version: str, *, wrong: bool = False, unparsed: bool = False,
              label: str | None = None, q: str | None = None, positions: Sequence[int] | None = None,
              limit: int | None = None, offset: int = 0) -> list[ItemRow]:
        """A run's answered items (with the inputs of `exam_version`), in exam order: only the wrong ones, the
        unparsed ones, those with this reference `label`, those whose input or answer contains `q` (any case)
        or whose id is `q`, those at `positions`; `limit` and `offset` page them in SQL."""
        if positions is not None and not positions:
            return []
        where, args = _item_filters(run_id, wrong, unparsed, label, q, positions)
        sql = f"SELECT {_ITEM_COLUMNS} {_ITEM_JOIN} WHERE {where} ORDER BY a.position"
        args = [exam_version, *args]
        if limit is not None or offset:
            sql += " LIMIT ? OFFSET ?"
            args += [NO_LIMIT if limit is None or limit < 0 else limit, offset]
        return [ItemRow(r[0], r[1], r[2], r[3], r[4], None if r[5] is None else bool(r[5]), r[6], bool(r[7]),
                        r[8], r[9]) for r in self.db.execute(sql, args)]

    def item_answer(self, run_id: str, exam_version: str, item_id: str) -> ItemAnswer | None:
        """A run's answer to one item in full, with the item of `exam_version` (None if it has no answer)."""
        r = self.db.execute(
            "SELECT i.body, a.text, a.choice_logprobs, a.prompt_tokens, a.completion_tokens, a.latency_s, a.cached, "
            "a.request_key, g.grader, g.score, g.correct, g.extracted, g.parsed, g.rationale, g.raw, a.position "
            f"{_ITEM_JOIN} WHERE a.run_id = ? AND a.item_id = ?", (exam_version, run_id, item_id)).fetchone()
        if r is None:
            return None
        return ItemAnswer(r[0], r[1], json.loads(r[2]) if r[2] else None, r[3], r[4], r[5], bool(r[6]), r[7], r[8],
                          r[9], None if r[10] is None else bool(r[10]), r[11], bool(r[12]), r[13], r[14], r[15])

    def neighbours(self, run_id: str, position: int) -> tuple[str | None, str | None]:
        """The ids of the items a run answered just before and just after this position (None at either end)."""
        row = self.db.execute(
            "SELECT (SELECT item_id FROM answers WHERE run_id = ? AND position < ? ORDER BY position DESC LIMIT 1), "
            "(SELECT item_id FROM answers WHERE run_id = ? AND position > ? ORDER BY position LIMIT 1)",
            (run_id, position, run_id, position)).fetchone()
        return row[0], row[1]

    def confusion_cells(self, run_id: str, exam_version: str) -> list[tuple[str, str, int]]:
        """(reference, what the answer was read as or '' when unparsed, count) over a run's answers."""
        return self.db.execute(f"SELECT i.reference, coalesce(g.extracted, ''), count(*) {_ITEM_JOIN} "
                               "WHERE a.run_id = ? GROUP BY 1, 2", (exam_version, run_id)).fetchall()

    def score_histogram(self, run_id: str, bins: int) -> list[tuple[int | None, int]]:
        """(bucket, count) of a run's grade scores in `bins` equal buckets (a score of 1 falls in the last).
        Bucketed here, from SQL's count per distinct score: SQLite's CAST truncates, PostgreSQL's rounds."""
        counts: dict[int | None, int] = {}
        for score, n in self.db.execute("SELECT score, count(*) FROM grades WHERE run_id = ? GROUP BY score",
                                        (run_id,)):
            bucket = min(int(score * bins), bins - 1)
            counts[bucket] = counts.get(bucket, 0) + n
        return list(counts.items())

    def paired_grades(self, run_a: str, run_b: str) -> list[tuple[int | None, float, int | None, float]]:
        """(correct, score) of run A then of run B on every item both graded; correct is 1, 0 or None."""
        return self.db.execute(
            "SELECT ga.correct, ga.score, gb.correct, gb.score FROM grades ga JOIN grades gb "
            "ON gb.run_id = ? AND gb.item_id = ga.item_id WHERE ga.run_id = ?", (run_b, run_a)).fetchall()

    def count_paired(self, run_a: str, run_b: str, exam_version: str, *, discordant_only: bool = False) -> int:
        """How many items runs A and B both answered (only those they grade differently if `discordant_only`)."""
        where = f" AND {_DISCORDANT}" if discordant_only else ""
        return self.db.execute(f"SELECT count(*) {_PAIRED_JOIN}{where}",
                               [run_b, exam_version, run_a]).fetchone()[0]

    def paired_items(self, run_a: str, run_b: str, exam_version: str, *, discordant_only: bool = False,
                     limit: int = -1, offset: int = 0) -> list[PairedItem]:
        """The items runs A and B both answered, with A's items from `exam_version`: those they grade differently
        first, then in A's exam order; `limit` and `offset` page them in SQL."""
        where = f" AND {_DISCORDANT}" if discordant_only else ""
        rows = self.db.execute(
            f"SELECT ga.item_id, i.input, i.reference, aa.text, ga.correct, ga.score, ab.text, gb.correct, gb.score, "
            f"{_DISCORDANT} {_PAIRED_JOIN}{where} ORDER BY {_DISCORDANT} DESC, aa.position LIMIT ? OFFSET ?",
            [run_b, exam_version, run_a, NO_LIMIT if limit < 0 else limit, offset]).fetchall()
        return [PairedItem(r[0], r[1], r[2], r[3], None if r[4] is None else bool(r[4]), r[5], r[6],
                           None if r[7] is None else bool(r[7]), r[8], bool(r[9])) for r in rows]

    # -- human labels and teaching runs --------------------------------------------------

    def put_label(self, run_id: str, item_id: str, correct: bool | None, who: str) -> None:
        """A person's verdict on one answer (None takes it back)."""
        with self.transaction():
            if correct is None:
                self.db.execute("DELETE FROM labels WHERE run_id = ? AND item_id = ? AND who = ?",
                                (run_id, item_id, who))
            else:
                self.db.execute(_upsert("labels", ("run_id", "item_id", "who", "correct", "created_at"),
                                        ("run_id", "item_id", "who")),
                                (run_id, item_id, who, int(correct), time.time()))

    def labels(self, run_id: str) -> list[tuple[str, str, bool, float]]:
        """(item_id, who, correct, created_at) of every human label on a run, oldest first."""
        return [(r[0], r[1], bool(r[2]), r[3]) for r in self.db.execute(
            "SELECT item_id, who, correct, created_at FROM labels WHERE run_id = ? ORDER BY created_at", (run_id,))]

    def put_teach_run(self, name: str, path: Path) -> None:
        """Remember where a teaching run lives, so the viewer can list it."""
        with self.transaction():
            self.db.execute(_upsert("teach_runs", ("name", "path", "created_at"), ("name",)),
                            (name, str(Path(path).resolve()), time.time()))

    def teach_runs(self) -> list[tuple[str, Path, float]]:
        return [(r[0], Path(r[1]), r[2]) for r in
                self.db.execute("SELECT name, path, created_at FROM teach_runs ORDER BY created_at DESC")]

    def request(self, key: str) -> Request:
        row = self.db.execute("SELECT request FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise KeyError(key)
        return Request.model_validate_json(row[0])
