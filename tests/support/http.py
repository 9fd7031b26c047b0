"""A real HTTP(S) server on loopback for channel tests, with scripted responses.

A reply can be slow in the ways a hostile or broken receiver is: late (delay),
one byte at a time from its status line (trickle_headers) or only in its body
(trickle_body), or far larger than anyone should read (repeat, chunked).

The fixtures ``http_server`` and ``https_server`` give a test a server of its own; a module imports them as
themselves, and ``certificate`` from tests/support/tls.py beside ``https_server``.
"""

from __future__ import annotations

import dataclasses
import http.server
import threading
import time
from collections import deque
from collections.abc import Iterator
from types import TracebackType

import pytest

from .services import free_port
from .tls import Certificate


@dataclasses.dataclass(frozen=True)
class Reply:
    """What the server answers: a status, headers and a body."""

    status: int = 200
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    body: bytes = b"{}"
    delay: float = 0.0  # seconds to wait before answering
    trickle_headers: float = 0.0  # seconds before each byte of the whole answer, from its status line on
    trickle_body: float = 0.0  # seconds before each byte of the body; the status line and headers go at once
    repeat: int = 1  # the body is sent this many times over: a huge answer without a huge bytes object
    chunked: bool = False  # Transfer-Encoding: chunked (a chunk per repeat) instead of a Content-Length


@dataclasses.dataclass(frozen=True)
class Received:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when it arrived
    client_port: int = 0  # the client's port: requests on one kept-alive connection share it


class HttpServer:
    """ThreadingHTTPServer on 127.0.0.1; HTTPS when given a certificate. A context manager: started, then stopped."""

    def __init__(self, certificate: Certificate | None = None) -> None:
        self.port = free_port()
        self.received: list[Received] = []
        self.replies: deque[Reply] = deque()
        self.default = Reply()
        self.cut_short: list[float] = []  # time.monotonic() of each answer the client stopped reading
        self.lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with server.lock:
                    server.received.append(
                        Received(
                            self.command,
                            self.path,
                            dict(self.headers.items()),
                            body,
                            time.monotonic(),
                            self.client_address[1],
                        )
                    )
                    reply = server.replies.popleft() if server.replies else server.default
                if reply.delay:
                    time.sleep(reply.delay)
                try:
                    self._answer(reply)
                except OSError:  # the client gave up (a timeout or a size cap): nothing more to answer
                    self.close_connection = True
                    with server.lock:
                        server.cut_short.append(time.monotonic())

            def _answer(self, reply: Reply) -> None:
                framing = (
                    {"Transfer-Encoding": "chunked"}
                    if reply.chunked
                    else {"Content-Length": str(len(reply.body) * reply.repeat)}
                )
                reason = self.responses.get(reply.status, ("",))[0]
                lines = [
                    f"HTTP/1.1 {reply.status} {reason}",
                    *(f"{name}: {value}" for name, value in {**reply.headers, **framing}.items()),
                ]
                if reply.headers.get("Connection", "").lower() == "close":
                    self.close_connection = True
                part = b"%x\r\n%s\r\n" % (len(reply.body), reply.body) if reply.chunked else reply.body
                self._send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), reply.trickle_headers)
                for _ in range(reply.repeat if reply.body else 0):
                    self._send(part, reply.trickle_headers or reply.trickle_body)
                if reply.chunked:
                    self._send(b"0\r\n\r\n", reply.trickle_headers or reply.trickle_body)

            def _send(self, data: bytes, every: float) -> None:
                """All of ``data`` at once, or a byte at a time, ``every`` seconds."""
                if not every:
                    self.wfile.write(data)
                    return
                for n in range(len(data)):
                    time.sleep(every)
                    self.wfile.write(data[n : n + 1])

            do_GET = do_POST = do_PUT = do_DELETE = _handle

            def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        self.scheme = "http"
        if certificate is not None:
            self.httpd.socket = certificate.server_context().wrap_socket(self.httpd.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def reply_next(self, *replies: Reply) -> None:
        """Answer the next requests with these, in order; then ``default``."""
        with self.lock:
            self.replies.extend(replies)

    def requests(self) -> list[Received]:
        with self.lock:
            return list(self.received)

    def start(self) -> HttpServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> HttpServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@pytest.fixture
def http_server() -> Iterator[HttpServer]:
    """A plain HTTP server of this test's own."""
    with HttpServer() as server:
        yield server


@pytest.fixture
def https_server(certificate: Certificate) -> Iterator[HttpServer]:
    """An HTTPS server of this test's own, presenting the test certificate."""
    with HttpServer(certificate) as server:
        yield server
