"""Inbox API benchmark: GET /v1/me/notifications and /count against the bare SQL, in the same run.

    .venv/bin/python bench/api.py [--rows N] [--heavy-user-rows M] [--requests R] [--database sqlite|postgresql|both]

For each database: a fresh database with N inbox rows (default 1,000,000), of which M (default
100,000) belong to the measured user and the rest to 9,999 others; the web process started from
the Procfile's web line; then R sequential requests on one keep-alive connection for each of:
the first page (limit=20), a page deep in the inbox (by its cursor), and the counts. The bare SQL
of the same queries is timed on a direct connection in the same run. Reported: p50/p99 in ms,
requests/s, and the ratio of the API's p50 to the bare query's. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg2  # noqa: E402

from dispatcher.api.auth import mint_user_token  # noqa: E402
from dispatcher.storage.db import database, init_database  # noqa: E402
from dispatcher.storage.migrate import migrate  # noqa: E402
from tests.support.services import POSTGRES_ADMIN_DSN, free_port  # noqa: E402
from tests.support.web import WebServer  # noqa: E402

SECRET = "bench-user-token-secret-0123456789abcdef"
USER = "heavy"
OTHERS = 9_999


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(seconds: list[float]) -> dict[str, float]:
    return {
        "p50_ms": statistics.median(seconds) * 1000,
        "p99_ms": percentile(seconds, 0.99) * 1000,
        "per_s": len(seconds) / sum(seconds),
    }


def timed(call: Callable[[], Any], count: int) -> list[float]:
    call()  # warm up: connection, caches, prepared plans
    spent = []
    for _ in range(count):
        start = time.perf_counter()
        call()
        spent.append(time.perf_counter() - start)
    return spent


@contextlib.contextmanager
def fresh_database(kind: str, directory: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{directory / 'bench.db'}"
        return
    name = f"tidings_bench_api_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(POSTGRES_ADMIN_DSN)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        database.close()
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def populate(kind: str, rows: int, heavy_rows: int) -> None:
    """``rows`` events, in-app deliveries and inbox rows: ``heavy_rows`` of them the measured user's,
    interleaved with the others' (ids in time order); of the measured user's, half seen, a quarter read, a
    twentieth archived."""
    every = max(1, rows // heavy_rows)
    # the n-th row belongs to the measured user when n % every == 0, else to one of the others
    user = f"CASE WHEN n % {every} = 0 THEN '{USER}' ELSE 'u' || (n % {OTHERS}) END"
    if kind == "postgresql":
        series = f"SELECT n FROM generate_series(1, {rows}) AS n"
        at = "TIMESTAMP '2026-01-01' + n * INTERVAL '1 second'"
    else:
        series = f"WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {rows}) SELECT n FROM s"
        at = "datetime('2026-01-01', '+' || n || ' seconds')"

    def execute(sql: str) -> None:
        database.execute_sql(sql.replace("%", "%%") if kind == "postgresql" else sql)

    with database.atomic():
        # one event per row: a delivery is unique per (event, user, channel)
        execute(
            "INSERT INTO event (id, source, event_id, type, data, received_at)"
            f" SELECT n, '/bench', 'evt-' || n, 'team.invite.sent', '{{}}', {at} FROM ({series}) AS s"
        )
        execute(
            "INSERT INTO delivery (id, event_id, user_id, channel, status, attempts, next_attempt_at, held,"
            " created_at, updated_at, sent_at)"
            f" SELECT n, n, {user}, 'in_app', 'sent', 1, {at}, false, {at}, {at}, {at} FROM ({series}) AS s"
        )
        execute(
            "INSERT INTO inbox_item (id, delivery_id, user_id, type, title, body, url, data, created_at,"
            " seen_at, read_at, archived_at)"
            f" SELECT n, n, {user}, 'team.invite.sent', 'Mira invited you to join Wolves',"
            " 'Mira invited you to join Wolves. Open the invite to accept it.', 'https://play.example/invites/1',"
            f" '{{}}', {at},"
            f" CASE WHEN (n / {every}) % 2 = 0 THEN {at} END, CASE WHEN (n / {every}) % 4 = 0 THEN {at} END,"
            f" CASE WHEN (n / {every}) % 20 = 1 THEN {at} END FROM ({series}) AS s"
        )
    if kind == "postgresql":
        database.execute_sql("SELECT setval(pg_get_serial_sequence('event', 'id'), %s)", (rows,))
        database.execute_sql("SELECT setval(pg_get_serial_sequence('delivery', 'id'), %s)", (rows,))
        database.execute_sql("SELECT setval(pg_get_serial_sequence('inbox_item', 'id'), %s)", (rows,))
    # PostgreSQL: VACUUM sets the visibility map, as autovacuum does on a live table, so that counts can be
    # index-only scans.
    database.execute_sql("VACUUM ANALYZE" if kind == "postgresql" else "ANALYZE")


def bare_queries(kind: str, deep_id: int) -> dict[str, Callable[[], Any]]:
    """The queries the endpoints boil down to, on a direct connection: what the API adds is measured against them."""
    mark = "%s" if kind == "postgresql" else "?"
    columns = "id, type, title, body, url, data, created_at, seen_at, read_at, archived_at"
    page = f"SELECT {columns} FROM inbox_item WHERE user_id = {mark} AND archived_at IS NULL ORDER BY id DESC LIMIT 21"
    deep = (
        f"SELECT {columns} FROM inbox_item WHERE user_id = {mark} AND archived_at IS NULL AND id < {mark}"
        f" ORDER BY id DESC LIMIT 21"
    )
    # the counts as commands/inbox.counts asks for them: one query per partial index
    active = f"SELECT COUNT(id) FROM inbox_item WHERE user_id = {mark} AND archived_at IS NULL"
    counts = [active, f"{active} AND read_at IS NULL", f"{active} AND seen_at IS NULL"]
    return {
        "first page": lambda: database.execute_sql(page, (USER,)).fetchall(),
        "deep page": lambda: database.execute_sql(deep, (USER, deep_id)).fetchall(),
        "count": lambda: [database.execute_sql(query, (USER,)).fetchall() for query in counts],
    }


def run(kind: str, rows: int, heavy_rows: int, requests: int) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory() as directory, fresh_database(kind, Path(directory)) as url:
        init_database(url)
        migrate()
        start = time.perf_counter()
        populate(kind, rows, heavy_rows)
        print(
            f"{kind}: {rows:,} inbox rows ({heavy_rows:,} the measured user's) in {time.perf_counter() - start:.0f} s"
        )
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")},
            "PYTHONPATH": str(ROOT),
            "TIDINGS_DATABASE_URL": url,
            "TIDINGS_HTTP_PORT": str(free_port()),
            "TIDINGS_USER_TOKEN_SECRET": SECRET,
            "TIDINGS_HTTP_RATE_LIMIT": str(10**9),
            "TIDINGS_LOG_LEVEL": "warning",
        }
        with WebServer(env, Path(directory) / "web.log").start() as web:
            token = mint_user_token(SECRET, USER, ttl=3600)
            with web.client(token) as client:
                walk = client.get("/v1/me/notifications", params={"limit": 100}).json()
                for _ in range(heavy_rows // 200):  # halfway down the user's inbox
                    walk = client.get(
                        "/v1/me/notifications", params={"limit": 100, "cursor": walk["next_cursor"]}
                    ).json()
                deep_cursor, deep_id = walk["next_cursor"], walk["items"][-1]["id"]

                def get(path: str, **params: Any) -> Callable[[], Any]:
                    def call() -> Any:
                        response = client.get(path, params=params)
                        response.raise_for_status()
                        return response.content

                    return call

                api = {
                    "first page": get("/v1/me/notifications", limit=20),
                    "deep page": get("/v1/me/notifications", limit=20, cursor=deep_cursor),
                    "count": get("/v1/me/notifications/count"),
                }
                results = {}
                bare = bare_queries(kind, deep_id)
                for name in api:
                    results[name] = {
                        "api": summary(timed(api[name], requests)),
                        "sql": summary(timed(bare[name], requests)),
                    }
        database.close()
        return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--heavy-user-rows", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    args = parser.parse_args()
    kinds = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    report = {}
    for kind in kinds:
        report[kind] = run(kind, args.rows, args.heavy_user_rows, args.requests)
    print()
    header = f"{'API p50':>8} {'p99':>8} {'req/s':>7} | {'SQL p50':>8} {'p99':>8} | {'p50 x':>6}"
    print(f"{'database':<11}{'query':<12}| {header}")
    print("-" * 80)
    for kind, results in report.items():
        for name, result in results.items():
            api, sql = result["api"], result["sql"]
            print(
                f"{kind:<11}{name:<12}| {api['p50_ms']:>8.2f} {api['p99_ms']:>8.2f} {api['per_s']:>7.0f} |"
                f" {sql['p50_ms']:>8.2f} {sql['p99_ms']:>8.2f} | {api['p50_ms'] / sql['p50_ms']:>6.1f}"
            )
    print("\nms per request, one keep-alive connection; p50 x = API p50 / bare SQL p50 (same run, same database)")
    out = ROOT / "bench" / "results" / "api.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "results": report}, indent=2))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
