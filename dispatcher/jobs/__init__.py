"""Periodic work that schedules.py runs: releasing held deliveries, the sweep, digests, cleanups, job slots."""
