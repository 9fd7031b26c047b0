"""The Celery 5 code a user would otherwise write for Tidings' job (the baseline of bench/compare.py).

For each ``payout.received`` event: dedup on (source, id), one preference lookup per recipient,
one inbox row per recipient (all in one transaction), then one ``send_email`` task per recipient
whose email is on, sent over a reused SMTP connection per worker process.

- ``app``: the Celery application and its two tasks (``ingest``, ``send_email``); run it with the
  stock ``celery -A bench.celery_baseline.app worker`` (see ``bench/baselines.py``).
- ``db``: the schema (``setup_database``) and a per-process connection for SQLite or PostgreSQL.
- ``render``: the Jinja2 templates of the project's templates/ folder.

Configured from the environment: BENCH_BROKER_URL, BENCH_PREFIX (queue names), BENCH_DATABASE_URL,
BENCH_SMTP_PORT, BENCH_PREFETCH (worker_prefetch_multiplier, default 4).
"""
