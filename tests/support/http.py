"""A real HTTP(S) server on loopback for channel tests, with scripted responses."""

from __future__ import annotations

import dataclasses
import http.server
import ssl
import threading
import time
from collections import deque
from pathlib import Path

from .services import free_port


@dataclasses.dataclass(frozen=True)
class Reply:
    """What the server answers: a status, headers and a body."""

    status: int = 200
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    body: bytes = b"{}"
    delay: float = 0.0  # seconds to wait before answering


@dataclasses.dataclass(frozen=True)
class Received:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when it arrived


class HttpServer:
    """ThreadingHTTPServer on 127.0.0.1; HTTPS when given a certificate and key."""

    def __init__(self, cert: Path | None = None, key: Path | None = None) -> None:
        self.port = free_port()
        self.received: list[Received] = []
        self.replies: deque[Reply] = deque()
        self.default = Reply()
        self.lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with server.lock:
                    server.received.append(Received(self.command, self.path, dict(self.headers.items()), body,
                                                    time.monotonic()))
                    reply = server.replies.popleft() if server.replies else server.default
                if reply.delay:
                    time.sleep(reply.delay)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                try:
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test): nothing to answer

            do_GET = do_POST = do_PUT = do_DELETE = _handle

            def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        self.scheme = "http"
        if cert is not None and key is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert, key)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
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
