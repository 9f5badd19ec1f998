"""`magister view`: a local web app over the store (FastAPI, server-rendered Jinja templates).

Every page answers `?format=json` with the data it shows; tables also answer `?format=csv` and
`?format=jsonl` (all rows that match the filters, streamed page by page). Bound to 127.0.0.1 by
default; on any other host every request needs the token printed at start (as `?token=`, which
sets a cookie, or an `Authorization: Bearer` header).
"""

from __future__ import annotations

import csv
import io
import json
import secrets
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from magister.errors import MagisterError
from magister.jsonl import finite
from magister.store import Store
from magister.web import charts, data
from magister.web.templates import render

STATIC = Path(__file__).parent / "static"


class LabelIn(BaseModel):
    item_id: str
    correct: bool | None  # None takes the label back (undo)
    who: str | None = None


def _flat(row: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}_"))
        elif isinstance(value, list):
            out[f"{prefix}{key}"] = json.dumps(value)
        else:
            out[f"{prefix}{key}"] = value
    return out


def _table(rows: Iterable[dict[str, Any]], fmt: str, name: str) -> Response:
    """Stream rows as CSV or JSONL, as a download."""
    def jsonl() -> Iterator[str]:
        for row in rows:
            yield json.dumps(finite(row), ensure_ascii=False) + "\n"

    def as_csv() -> Iterator[str]:
        buffer = io.StringIO()
        writer: csv.DictWriter[str] | None = None
        for row in rows:
            flat = _flat(row)
            if writer is None:
                writer = csv.DictWriter(buffer, fieldnames=list(flat), extrasaction="ignore")
                writer.writeheader()
            writer.writerow(flat)
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()

    media = "text/csv" if fmt == "csv" else "application/x-ndjson"
    return StreamingResponse(as_csv() if fmt == "csv" else jsonl(), media_type=f"{media}; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{name}.{fmt}"'})


def _query(request: Request, **change: Any) -> str:
    params = {k: v for k, v in request.query_params.items() if k not in ("format", "page", "token")}
    params.update({k: v for k, v in change.items() if v is not None})
    return urlencode(params)


def _page(request: Request, template: str, context: dict[str, Any], table: Callable[[], Iterable[dict]] | None = None,
          name: str = "table") -> Response:
    fmt = request.query_params.get("format", "html")
    if fmt == "json":
        return JSONResponse(finite(context))
    if fmt in ("csv", "jsonl") and table is not None:
        return _table(table(), fmt, name)
    if fmt != "html":
        return PlainTextResponse(f"unknown format {fmt!r}: use html, json" + (", csv or jsonl" if table else ""),
                                 status_code=400)
    extra = {"query_json": _query(request, format="json"), "query_csv": _query(request, format="csv"),
             "query_jsonl": _query(request, format="jsonl"), "query_page": _query(request) + "&" if _query(request)
             else ""}
    return HTMLResponse(render(template, **context, **extra))


def _flag(value: str | None) -> bool:
    return value not in (None, "", "0", "false", "off")


class BadParameter(ValueError):
    """A query parameter out of its range: answered 400 with what was wrong."""


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _int(value: str | None, default: int, name: str, high: int) -> int:
    """A positive integer query parameter (default when absent), or BadParameter naming it."""
    if not value:
        return default
    if not value.isdigit() or len(value) > len(str(high)) or not 1 <= int(value) <= high:
        raise BadParameter(f"'{name}' must be a whole number from 1 to {high:,}, got {value[:30]!r}")
    return int(value)


def _host_name(host: str) -> str:
    """The name in a Host header without its port: '127.0.0.1:8765' -> '127.0.0.1', '[::1]:80' -> '::1'."""
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def create_app(store_path: Path | None = None, *, token: str | None = None, who: str = "me",
               battles: dict[str, Path] | None = None, hosts: Iterable[str] | None = None) -> FastAPI:
    """The app over the store at `store_path` (default: the user's). `token`: required on every request.
    `hosts`: the names a request's Host header may carry (the bound address; `serve` passes them), so a
    page of another site that resolves its own name to 127.0.0.1 (DNS rebinding) is refused."""
    app = FastAPI(title="Magister", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    battle_files = dict(battles or {})
    allowed = {h.lower() for h in hosts} if hosts is not None else None

    @contextmanager
    def store() -> Iterator[Store]:
        """A connection for one request (SQLite connections are not shared between threads)."""
        opened = Store(store_path)
        try:
            yield opened
        finally:
            opened.close()

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable) -> Response:
        host = request.headers.get("host", "")
        if allowed is not None and _host_name(host).lower() not in allowed:
            return PlainTextResponse(f"unknown host {host[:60]!r}: open the address `magister view` printed",
                                     status_code=400)
        if token is not None:
            given = (request.query_params.get("token") or request.cookies.get("magister_token")
                     or request.headers.get("authorization", "").removeprefix("Bearer ").strip())
            if not given or not secrets.compare_digest(given, token):
                return PlainTextResponse("a token is required: open the URL `magister view` printed", status_code=401)
        if request.method != "GET":  # writes only from this app's own pages (no cross-site form posts)
            origin = request.headers.get("origin")  # scheme, host and port exactly as this page's own
            if origin is not None and origin != f"{request.url.scheme}://{host}":
                return PlainTextResponse("cross-origin write refused", status_code=403)
        response = await call_next(request)
        if token is not None and request.query_params.get("token") == token:
            response.set_cookie("magister_token", token, httponly=True, samesite="strict")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Content-Security-Policy",
                                    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                                    "script-src 'self'")
        return response

    @app.exception_handler(BadParameter)
    async def bad_parameter(request: Request, error: BadParameter) -> Response:
        if request.query_params.get("format") == "json":
            return JSONResponse({"error": str(error)}, status_code=400)
        return HTMLResponse(render("error.html", message=str(error)), status_code=400)

    @app.exception_handler(MagisterError)
    async def not_found(request: Request, error: MagisterError) -> Response:
        if request.query_params.get("format") == "json":
            return JSONResponse({"error": str(error)}, status_code=404)
        return HTMLResponse(render("error.html", message=str(error)), status_code=404)

    @app.get("/")
    def runs_page(request: Request) -> Response:
        exam, model = request.query_params.get("exam") or None, request.query_params.get("model") or None
        with store() as s:
            context = {**data.runs(s, exam=exam, model=model), "battles": sorted(battle_files)}
        return _page(request, "runs.html", context, lambda: context["runs"], "runs")

    @app.get("/runs/{run_id}")
    def run_page(request: Request, run_id: str) -> Response:
        q = request.query_params
        filters = {"wrong": _flag(q.get("wrong")), "unparsed": _flag(q.get("unparsed")),
                   "label": q.get("label") or None, "q": q.get("q") or None}
        with store() as s:
            context = data.run_page(s, run_id, page=_int(q.get("page"), 1, "page", 10**9), **filters)

        def every_row() -> Iterator[dict[str, Any]]:
            with store() as rows:
                page = 1
                while True:
                    chunk = data.run_page(rows, run_id, page=page, per_page=1000, **filters)
                    yield from chunk["items"]
                    if page >= chunk["pages"]:
                        return
                    page += 1

        return _page(request, "run.html", context, every_row, f"run-{context['run']['run_id']}")

    @app.get("/runs/{run_id}/items/{item_id:path}")
    def item_page(request: Request, run_id: str, item_id: str) -> Response:
        with store() as s:
            context = data.item_page(s, run_id, item_id)
        return _page(request, "item.html", context)

    @app.get("/compare")
    def compare_form(request: Request) -> Response:
        picked = request.query_params.getlist("run")
        if len(picked) != 2:
            return PlainTextResponse("select exactly two runs to compare", status_code=400)
        return RedirectResponse(f"/compare/{picked[0]}/{picked[1]}", status_code=303)

    @app.get("/compare/{run_a}/{run_b}")
    def compare_page(request: Request, run_a: str, run_b: str) -> Response:
        q = request.query_params
        only = _flag(q.get("discordant"))
        with store() as s:
            context = data.compare_page(s, run_a, run_b, page=_int(q.get("page"), 1, "page", 10**9), discordant_only=only)

        def every_row() -> Iterator[dict[str, Any]]:
            with store() as rows:
                first = data.compare_page(rows, run_a, run_b, per_page=10**9, discordant_only=only)
                yield from first["items"]

        return _page(request, "compare.html", context, every_row, "compare")

    @app.get("/leaderboard/battles/{name}")
    def battles_page(request: Request, name: str) -> Response:
        if name not in battle_files:
            return HTMLResponse(render("error.html", message=f"no battles file named '{name}'"), status_code=404)
        context = data.battles_page(battle_files[name])
        return _page(request, "leaderboard.html", context, lambda: context["rows"], f"leaderboard-{name}")

    @app.get("/leaderboard/{exam}")
    def leaderboard_page(request: Request, exam: str) -> Response:
        with store() as s:
            context = data.leaderboard_page(s, exam)
        return _page(request, "leaderboard.html", context, lambda: context["rows"], f"leaderboard-{exam}")

    @app.get("/teach/{name}")
    def teach_page(request: Request, name: str) -> Response:
        with store() as s:
            directory = data.teach_dir(s, name)
        context = charts.teach_context(data.teach_page(directory, name))
        table = request.query_params.get("table", "examples")

        def rows() -> list[dict[str, Any]]:  # ?format=csv|jsonl: every example (default) or the rounds table
            if table == "rounds":
                return [{k: v for k, v in r.items() if k not in ("drafts", "mined_items", "losses")}
                        for r in context["rounds"]]
            return [{"round": r["round"], **d} for r in context["rounds"] for d in r["drafts"]]

        return _page(request, "teach.html", context, rows, f"{name}-{table}")

    @app.get("/teach/{name}/data.jsonl")
    def teach_download(name: str) -> Response:
        with store() as s:
            directory = data.teach_dir(s, name)
        return _table(data.teach_data(directory), "jsonl", f"{name}-training-data")

    @app.get("/label/{run_id}")
    def label_page(request: Request, run_id: str) -> Response:
        person = request.query_params.get("who") or who
        with store() as s:
            context = data.label_page(s, run_id, person, sample=_int(request.query_params.get("sample"), 50, "sample", 100_000))
        context["reliability_svg"] = charts.reliability(context["agreement"].get("calibration_curve", []))
        return _page(request, "label.html", context, lambda: context["queue"], f"labels-{run_id}")

    @app.post("/api/runs/{run_id}/labels")
    def put_label(run_id: str, label: LabelIn) -> Response:
        with store() as s:
            run = data.find_run(s, run_id)
            if not s.has_answer(run.id, label.item_id):
                return JSONResponse({"error": f"run {run.id} has no item '{label.item_id}'"}, status_code=404)
            s.put_label(run.id, label.item_id, label.correct, (label.who or who).strip() or who)
        return JSONResponse({"ok": True})

    return app


def serve(host: str = "127.0.0.1", port: int = 8765, store_path: Path | None = None, who: str = "me",
          battles: dict[str, Path] | None = None, echo: Callable[[str], None] = print) -> None:
    """Run the app with uvicorn until Ctrl-C; prints the URL (with the token when one is needed)."""
    import uvicorn

    loopback = host in ("127.0.0.1", "localhost", "::1")
    token = None if loopback else secrets.token_urlsafe(18)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    echo(f"Magister view on {url}  (Ctrl-C stops it)")
    names = LOOPBACK if loopback else (host,)
    uvicorn.run(create_app(store_path, token=token, who=who, battles=battles, hosts=names), host=host, port=port,
                log_level="warning")
