"""Benchmarks (a package so that ``bench.celery_baseline`` and ``bench.baselines`` import from the project root)."""
