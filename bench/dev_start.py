"""How long ``tidings dev`` takes to serve: from the command to /healthz answering, and to the demo published.

    python bench/dev_start.py [--runs 5]

Each run starts ``tidings dev --demo`` in a new directory (a new database: the migration is part of the
start), with RabbitMQ pointed at a closed port, and stops it with SIGTERM. It prints each run and the medians.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def serving(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def one_run(directory: Path) -> tuple[float, float]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env["TIDINGS_BROKER_URL"] = "amqp://guest:guest@127.0.0.1:9/%2F"
    log = directory / "dev.log"
    tidings = str(Path(sys.executable).parent / "tidings")
    started = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [tidings, "dev", "--demo", "--port", str(port)], cwd=directory, env=env, stdout=out, stderr=out
        )
    try:
        deadline = started + 60
        while not serving(f"http://127.0.0.1:{port}/healthz"):
            if time.perf_counter() > deadline or proc.poll() is not None:
                raise SystemExit(f"tidings dev did not serve:\n{log.read_text()}")
            time.sleep(0.01)
        serving_at = time.perf_counter() - started
        while "Demo: " not in log.read_text():
            if time.perf_counter() > deadline:
                raise SystemExit(f"the demo did not finish:\n{log.read_text()}")
            time.sleep(0.01)
        demo_at = time.perf_counter() - started
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    return serving_at, demo_at


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    results = []
    for number in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory(prefix="tidings-dev-") as directory:
            serving_at, demo_at = one_run(Path(directory))
        results.append((serving_at, demo_at))
        print(f"run {number}: serving after {serving_at:.2f} s, demo published after {demo_at:.2f} s")
    print(
        f"median of {args.runs}: serving after {statistics.median(r[0] for r in results):.2f} s, "
        f"demo published after {statistics.median(r[1] for r in results):.2f} s"
    )


if __name__ == "__main__":
    main()
