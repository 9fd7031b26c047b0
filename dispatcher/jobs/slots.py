"""Periodic jobs that must run once per slot, however many schedulers enqueue them."""

from __future__ import annotations

from dispatcher.storage.models import JobRun


def claim_slot(job: str, slot: str) -> bool:
    """True for the first caller for (job, slot), e.g. ("clean_up", "2026-11-23"); False for later ones."""
    return bool(JobRun.insert(job=job, slot=slot).on_conflict_ignore().as_rowcount().execute())
