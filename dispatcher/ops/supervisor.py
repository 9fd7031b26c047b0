"""``tidings run``: start every Procfile process, restart any that dies, stop them all together.

The stock ``dramatiq`` CLI shuts its whole group down when one worker process
dies; something must start it again. On a server that is systemd or a
platform's process manager; on a laptop or a single box, this.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import structlog

log = structlog.get_logger("tidings.supervisor")

MAX_RESTART_DELAY = 30.0
STOP_TIMEOUT = 30.0


def read_procfile(path: Path) -> dict[str, str]:
    """``name: command`` lines; blank lines and # comments are ignored."""
    processes = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, command = line.partition(":")
        if not sep or not name.strip().isidentifier() or not command.strip():
            raise ValueError(f"{path}:{number}: expected 'name: command'")
        processes[name.strip()] = command.strip()
    return processes


@dataclasses.dataclass
class Process:
    name: str
    command: str
    popen: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0

    def start(self, env: dict[str, str]) -> None:
        # Its own process group, so a stop reaches the dramatiq worker processes too.
        self.popen = subprocess.Popen(["/bin/sh", "-c", f"exec {self.command}"], env=env, start_new_session=True)
        log.info("process_started", process=self.name, pid=self.popen.pid)

    def signal(self, sig: signal.Signals, *, group: bool = False) -> None:
        """Signal the process (which forwards it to its children), or its whole group."""
        if self.popen is not None and self.popen.poll() is None:
            try:
                if group:
                    os.killpg(self.popen.pid, sig)
                else:
                    self.popen.send_signal(sig)
            except ProcessLookupError:
                pass


def run(procfile: Path, *, only: list[str] | None = None) -> int:
    """Supervise the Procfile's processes until SIGINT or SIGTERM; return the exit status."""
    commands = read_procfile(procfile)
    processes = [Process(name, command) for name, command in commands.items() if not only or name in only]
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for process in processes:
        process.start(env)
    while not stopping:
        time.sleep(0.2)
        for process in processes:
            if process.popen is None:
                if time.monotonic() >= process.next_start:
                    process.start(env)
                continue
            code = process.popen.poll()
            if code is None:
                continue
            process.restarts += 1
            delay = min(MAX_RESTART_DELAY, 2.0 ** min(process.restarts - 1, 5))
            log.warning("process_exited", process=process.name, code=code, restart_in=delay)
            process.popen = None
            process.next_start = time.monotonic() + delay
    log.info("stopping", processes=[p.name for p in processes])
    for process in processes:
        # Only the leader: dramatiq forwards SIGTERM to its workers, and a second
        # SIGTERM sent to them directly would make them quit without finishing.
        process.signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for process in processes:
        if process.popen is None:
            continue
        try:
            process.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.signal(signal.SIGKILL, group=True)
            process.popen.wait()
    return 0
