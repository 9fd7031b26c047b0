"""A private RabbitMQ node for tests that need a broker outage.

The machine's RabbitMQ (rabbit@localhost on 127.0.0.1:5672) is shared by everything on the machine:
a test must never stop it. A test that needs RabbitMQ to go away starts a node of its own instead, in
a temporary directory, on ports of its own, and stops or restarts only that node (every `rabbitmqctl`
call here carries `-n <its own node name>`)::

    with PrivateRabbitNode() as node:
        ... node.url ...
        node.stop_app()   # the outage
        node.start_app()

How the node is made (checked on these machines): the system rabbitmq.conf pins 5672
and RABBITMQ_NODE_PORT does not override it, so the node gets its own rabbitmq.conf. As root, both
`rabbitmq-server` and `rabbitmqctl` run as the rabbitmq user (HOME=/var/lib/rabbitmq) and so share its
Erlang cookie; the directory must be world-writable because the server drops to that user.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Self

import pika
import pika.exceptions
from pika.adapters.utils.connection_workflow import AMQPConnectorException

from .services import absent

NODE_PREFIX = "tidings-test-"


def port_outside_the_ephemeral_range() -> int:
    """A free port that no outgoing connection can take as its local port while our server is down.

    A port from free_port() is in the kernel's ephemeral range: during a minute's outage an outgoing
    connection on this busy machine may take it, and the server cannot come back (seen here once).
    """
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for port in random.sample(range(max(1024, low - 12000), low), 50):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port below the ephemeral range")


def require_rabbitmq_server() -> None:
    """Skip when RabbitMQ is not installed here, unless running in CI, where that is a failure."""
    missing = [tool for tool in ("rabbitmq-server", "rabbitmqctl") if shutil.which(tool) is None]
    if not missing:
        return
    absent(
        f"{' and '.join(missing)} not installed: cannot start a private RabbitMQ node", ci="CI must have it installed"
    )


class PrivateRabbitNode:
    """A RabbitMQ node of one test's own: own name, AMQP port, distribution port and data directory."""

    def __init__(self, *, start_timeout: float = 60.0, stop_timeout: float = 60.0) -> None:
        self.name = f"{NODE_PREFIX}{uuid.uuid4().hex[:10]}@localhost"
        self.port = port_outside_the_ephemeral_range()
        self.dist_port = port_outside_the_ephemeral_range()
        while self.dist_port == self.port:
            self.dist_port = port_outside_the_ephemeral_range()
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.dir: Path | None = None
        self.pid: int | None = None
        self.app_running = False
        self.started_in: float | None = None  # seconds from `rabbitmq-server -detached` to a first connection

    # --- Addresses -------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def __repr__(self) -> str:
        return f"<PrivateRabbitNode {self.name} amqp={self.port} dist={self.dist_port} dir={self.dir}>"

    # --- Life cycle ------------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the node detached and wait until guest can open an AMQP connection on its port."""
        assert self.dir is None, "start() once per node"
        self.dir = Path(tempfile.mkdtemp(prefix="tidings-rabbit-"))  # not under pytest's 0700 tmp root
        self.dir.chmod(0o777)
        (self.dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.port}\n"
            # guest may log in, from loopback only (the default): say so rather than rely on it
            "loopback_users.guest = true\n"
        )
        (self.dir / "plugins").write_text("[].\n")
        env = {
            **os.environ,
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq"),  # no extension: rabbitmq.conf
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "plugins"),
            "RABBITMQ_PID_FILE": str(self.dir / "pid"),
        }
        began = time.monotonic()
        launched = subprocess.run(
            ["rabbitmq-server", "-detached"], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        if launched.returncode != 0:
            self._fail_to_start(
                f"rabbitmq-server -detached exited {launched.returncode}: {launched.stdout}{launched.stderr}"
            )
        deadline = began + self.start_timeout
        while not self.accepts_connections():
            pid = self._read_pid()
            if pid is not None:
                self.pid = pid
                if not _alive(pid):
                    self._fail_to_start(f"the node's process {pid} exited during boot")
            if time.monotonic() > deadline:
                self._fail_to_start(f"the node did not accept AMQP connections within {self.start_timeout:.0f} s")
            time.sleep(0.25)
        self.started_in = time.monotonic() - began
        self.pid = self._read_pid() or self.pid
        self.app_running = True
        return self

    def accepts_connections(self) -> bool:
        """Whether guest can open (and close) an AMQP connection to the node right now."""
        parameters = pika.ConnectionParameters(
            host="127.0.0.1",
            port=self.port,
            credentials=pika.PlainCredentials("guest", "guest"),
            connection_attempts=1,
            socket_timeout=2,
            blocked_connection_timeout=2,
            stack_timeout=5,
        )
        try:
            pika.BlockingConnection(parameters).close()
            return True
        except (pika.exceptions.AMQPError, AMQPConnectorException, OSError):  # e.g. a handshake timeout
            return False

    def stop_app(self) -> None:
        """Stop the RabbitMQ application on this node only (the Erlang VM keeps running)."""
        self.private_node_ctl("stop_app")
        self.app_running = False

    def start_app(self) -> None:
        """Start the RabbitMQ application again on this node (on the same port)."""
        self.private_node_ctl("start_app")
        self.app_running = True

    def stop(self) -> None:
        """Stop the node and wait for its process to exit; kill it by its pid file as a last resort."""
        if self.dir is None:
            return
        self.pid = self._read_pid() or self.pid
        try:
            # with the pid file as argument, rabbitmqctl waits until that process has exited
            self.private_node_ctl("stop", str(self.dir / "pid"), timeout=self.stop_timeout)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            pass  # not up, or not answering: the pid file decides below
        self.pid = self._read_pid() or self.pid
        if self.pid is not None and not _wait_for_exit(self.pid, self.stop_timeout):
            os.kill(self.pid, signal.SIGKILL)
            _wait_for_exit(self.pid, 10)
        self.app_running = False

    def close(self) -> None:
        """Stop the node and remove its directory."""
        try:
            self.stop()
        finally:
            if self.dir is not None:
                shutil.rmtree(self.dir, ignore_errors=True)
                self.dir = None

    def __enter__(self) -> Self:
        require_rabbitmq_server()
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    # --- Helpers ---------------------------------------------------------------------------------

    def private_node_ctl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """`rabbitmqctl -n <this node> ARGS`: never without -n, never another node."""
        assert self.name.startswith(NODE_PREFIX) and self.name.endswith("@localhost"), self.name
        try:
            return subprocess.run(
                ["rabbitmqctl", "-n", self.name, *args], check=True, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.CalledProcessError as e:
            raise AssertionError(
                f"rabbitmqctl -n {self.name} {' '.join(args)} exited {e.returncode}:\n{e.stdout}{e.stderr}"
            ) from e

    def log_tail(self, lines: int = 40) -> str:
        if self.dir is None:
            return ""
        tails = []
        for log in sorted((self.dir / "log").glob("*.log")):
            try:
                text = log.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                continue
            tails.append(f"--- {log.name} ---\n" + "\n".join(text))
        return "\n".join(tails) or "(no log written)"

    def _read_pid(self) -> int | None:
        if self.dir is None:
            return None
        try:
            return int((self.dir / "pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def _fail_to_start(self, why: str) -> None:
        tail = self.log_tail()
        self.close()
        raise AssertionError(
            f"private RabbitMQ node {self.name} (AMQP port {self.port}) did not come up: {why}\n{tail}"
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _wait_for_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True
