"""Group commit: many threads' write transactions run by one thread, several per commit.

SQLite lets one connection write at a time. Eight worker threads each opening their own IMMEDIATE
transaction spend most of their time in SQLite's busy handler, which sleeps for up to 100 ms between
tries (bench/README.md has the profile). :class:`GroupCommit` gives the threads one writer instead:
a thread hands it a unit of work and waits; the writer runs what is waiting, each unit in a savepoint
of one transaction, commits once, then wakes the threads.

Each unit keeps its own all-or-nothing: one that raises is rolled back to its savepoint (its
``after_commit`` callbacks dropped with it) and its thread gets the exception, while the others commit.
If the commit itself fails, every thread of the batch gets that error, and nothing of the batch is
kept. A unit runs in a copy of its thread's context (structlog's bound variables, the current
message), on the writer's connection.
"""

from __future__ import annotations

import contextvars
import dataclasses
import queue
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from dispatcher.storage.db import database, transaction

T = TypeVar("T")
#: Units per transaction at most: a larger batch holds the write lock longer for other processes.
MAX_BATCH = 16


@dataclasses.dataclass
class _Unit(Generic[T]):
    work: Callable[[], T]
    context: contextvars.Context
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    result: T | None = None
    error: BaseException | None = None


class GroupCommit:
    """One writer thread for this process's write transactions (started on first use)."""

    def __init__(self, *, max_batch: int = MAX_BATCH, name: str = "tidings-group-commit") -> None:
        self.max_batch = max_batch
        self.name = name
        self._queue: queue.SimpleQueue[_Unit[Any]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def run(self, work: Callable[[], T]) -> T:
        """Run ``work`` in a transaction shared with other threads' units; return its result once committed,
        or raise its exception (or the commit's)."""
        unit: _Unit[T] = _Unit(work, contextvars.copy_context())
        self._start()
        self._queue.put(unit)
        unit.done.wait()
        if unit.error is not None:
            raise unit.error
        return unit.result  # type: ignore[return-value]  # None only when work returned None

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._run_batch(batch)

    def _run_batch(self, batch: list[_Unit[Any]]) -> None:
        try:
            with transaction():
                for unit in batch:
                    self._run_unit(unit)
        except BaseException as e:  # noqa: BLE001 - BEGIN or COMMIT failed: nothing of the batch is kept
            for unit in batch:
                if unit.error is None:
                    unit.error = e
        finally:
            for unit in batch:
                unit.done.set()

    @staticmethod
    def _run_unit(unit: _Unit[Any]) -> None:
        callbacks = database.obj._state.commit_callbacks  # peewee's list of after_commit callbacks
        mark = len(callbacks)
        try:
            with database.atomic():  # a savepoint
                unit.result = unit.context.run(unit.work)
        except Exception as e:  # noqa: BLE001 - the unit's thread gets it
            del callbacks[mark:]  # announced only if committed
            unit.error = e
