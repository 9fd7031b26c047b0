"""The one HTTP client of the HTTP channels (Discord, signed webhooks).

Every worker thread gets its own pooled ``requests.Session``. Each request has
connect and read timeouts, never follows a redirect, always verifies the TLS
certificate (against TIDINGS_HTTP_CA_FILE when set) and ignores proxy settings
in the environment, since a proxy would connect on our behalf, past the check.

Per-read timeouts do not stop a server that answers one byte every few seconds,
so each request also has a total deadline, from connect to last byte
(TIDINGS_HTTP_TOTAL_TIMEOUT), and its body is read in chunks up to a cap
(TIDINGS_HTTP_MAX_RESPONSE_BYTES): a slow or chatty receiver holds a worker
thread for a bounded time and memory.

Egress check: Tidings connects only to public addresses, unless
TIDINGS_ALLOW_PRIVATE_NETWORKS lets a range back in (see egress.py).

URLs carry tokens (Discord's is a password), so no message here holds a full
URL: :func:`redact_url` cuts it down first.
"""

from __future__ import annotations

import logging
import socket
import threading
import urllib.parse

import requests
import structlog
from urllib3.exceptions import ReadTimeoutError

from dispatcher.core.errors import DeliveryError
from dispatcher.core.settings import Settings

from .egress import EgressCheckingAdapter, EgressRefused, describe, sockets_watched

log = structlog.get_logger("tidings.http")

#: redact_url keeps this many path segments: "/api/webhooks/<id>" of a Discord webhook URL.
KEPT_PATH_SEGMENTS = 3
#: A response body is read this many bytes at a time.
CHUNK_BYTES = 16 * 1024


def redact_url(url: str) -> str:
    """scheme://host[:port]/first-path-segments, safe to log: tokens often end a webhook URL.

    https://discord.com/api/webhooks/123/TOKEN -> https://discord.com/api/webhooks/123/***: the last
    segment is always hidden and at most the first 3 are kept; userinfo, query and fragment are dropped.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        return "<invalid URL>"
    if not parts.scheme or not parts.hostname:
        return "<invalid URL>"
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if port is not None:
        host = f"{host}:{port}"
    return f"{parts.scheme}://{host}{_redact_path(parts.path)}"


def _redact_path(path: str) -> str:
    segments = [segment for segment in path.split("/") if segment]
    if not segments:
        return ""
    kept = segments[: min(KEPT_PATH_SEGMENTS, len(segments) - 1)]
    return "/" + "/".join([*kept, "***"])


class HideUrlPaths(logging.Filter):
    """urllib3 logs each request's path and query at DEBUG level; they may hold a token."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_logged_path(arg) for arg in record.args)
        return True


def _redact_logged_path(arg: object) -> object:
    if not isinstance(arg, str) or not arg.startswith("/"):
        return arg
    path, _, query = arg.partition("?")
    return _redact_path(path) + ("?***" if query else "")


# --- the total deadline -------------------------------------------------------------------------------------------


class Deadline:
    """One request's total deadline: when it passes, the sockets the request uses are shut down.

    A blocked read (in the status line, the headers or the body) then returns at
    once, and the request fails. A threading.Timer keeps the time; it is cancelled
    when the request ends, so no thread outlives the request. The connections show
    their sockets through egress.sockets_watched; the deadline keeps a duplicate of
    each file descriptor, its own to close, since the connection may close or wrap
    (TLS) its own meanwhile.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            sock.close()

    def watch(self, sock: socket.socket) -> None:
        """Shut `sock` down when the deadline passes, or now if it has."""
        try:
            duplicate = socket.fromfd(sock.fileno(), sock.family, sock.type)
        except OSError:  # closed already: nothing left to interrupt
            return
        with self._lock:
            self._sockets.append(duplicate)
            if self.expired:
                _shut_down(duplicate)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shut_down(sock)


def _shut_down(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # not connected (yet, or any more)
        pass


class DeadlinePassed(requests.exceptions.Timeout):
    """Raised between two chunks of a body when the request's deadline has passed."""


# --- the client ---------------------------------------------------------------------------------------------------


class HttpClient:
    """requests with one pooled Session per thread, timeouts, a total deadline, a response size cap, no redirects,
    egress checks."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.timeout = (settings.http_connect_timeout, settings.http_read_timeout)
        self.total_timeout = settings.http_total_timeout
        self.max_response_bytes = settings.http_max_response_bytes
        self.verify: bool | str = str(settings.http_ca_file) if settings.http_ca_file else True
        self._local = threading.local()
        self._sessions: set[requests.Session] = set()
        self._lock = threading.Lock()
        urllib3_log = logging.getLogger("urllib3.connectionpool")
        if not any(isinstance(f, HideUrlPaths) for f in urllib3_log.filters):
            urllib3_log.addFilter(HideUrlPaths())

    def post(self, url: str, *, body: bytes, headers: dict[str, str]) -> requests.Response:
        """POST; returns the response whatever its status (the caller interprets it), its body read.

        Raises DeliveryError(permanent=True) when the egress check refuses every address of the host
        (message names the host and the refused address, and mentions TIDINGS_ALLOW_PRIVATE_NETWORKS),
        DeliveryError(permanent=False) for connection errors, timeouts and TLS errors (message says which,
        and never contains the full URL: use redact_url), and DeliveryError(permanent=False) "did not finish
        within N s (TIDINGS_HTTP_TOTAL_TIMEOUT)" when the request, from connect to the body's last byte, takes
        longer than that.

        A body larger than TIDINGS_HTTP_MAX_RESPONSE_BYTES (by its Content-Length or as it arrives) is not
        read further: the connection is closed and the response returned with its status and headers but an
        empty body (logged as a warning). The status is the receiver's answer, and it has been read whole; an
        error instead would send a delivery the receiver accepted again and again.
        """
        deadline = Deadline(self.total_timeout)
        try:
            with deadline, sockets_watched(deadline.watch):
                response = self._session().post(
                    url, data=body, headers=headers, timeout=self.timeout, allow_redirects=False, stream=True
                )
                self._read_body(response, url, deadline)
            return response
        except requests.exceptions.RequestException as e:
            error = self._too_late(url) if deadline.expired else classify(e, url, self.timeout)
        # Raised outside the except block, so no traceback chains requests' messages, which hold the URL.
        raise error

    def _read_body(self, response: requests.Response, url: str, deadline: Deadline) -> None:
        """Read the body into response.content, in chunks, within the cap and the deadline."""
        try:
            content = self._capped_body(response, deadline)
        except BaseException:
            response.close()
            raise
        if content is None:
            response.close()  # the rest stays unread: closing drops the connection instead of reusing it
            log.warning(
                "http_response_too_large",
                url=redact_url(url),
                status=response.status_code,
                limit=f"{self.max_response_bytes} bytes (TIDINGS_HTTP_MAX_RESPONSE_BYTES)",
            )
            content = b""
        _set_content(response, content)

    def _capped_body(self, response: requests.Response, deadline: Deadline) -> bytes | None:
        """The body, or None as soon as it proves larger than the cap."""
        cap = self.max_response_bytes
        if _declared_length(response) > cap:
            return None
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_content(CHUNK_BYTES):
            if deadline.expired:
                raise DeadlinePassed()
            size += len(chunk)
            if size > cap:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_late(self, url: str) -> DeliveryError:
        return DeliveryError(
            f"POST to {redact_url(url)} did not finish within {self.total_timeout:g} s (TIDINGS_HTTP_TOTAL_TIMEOUT)"
        )

    def _session(self) -> requests.Session:
        """This thread's session, made on first use (and again after close())."""
        session: requests.Session | None = getattr(self._local, "session", None)
        with self._lock:
            if session is not None and session in self._sessions:
                return session
            session = requests.Session()
            self._sessions.add(session)
        session.trust_env = False  # no proxies, .netrc or CA bundle from the environment
        session.verify = self.verify
        adapter = EgressCheckingAdapter(self.settings.allow_private_networks)
        session.adapters.clear()
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        self._local.session = session
        return session

    def close(self) -> None:
        """close every thread's session"""
        with self._lock:
            sessions, self._sessions = self._sessions, set()
        for session in sessions:
            session.close()


def _declared_length(response: requests.Response) -> int:
    try:
        return int(response.headers.get("Content-Length", "0"))
    except ValueError:
        return 0


def _set_content(response: requests.Response, content: bytes) -> None:
    """What requests itself does once it has read a body: .content, .text and .json() then use it."""
    response._content = content
    response._content_consumed = True


def classify(error: requests.exceptions.RequestException, url: str, timeout: tuple[float, float]) -> DeliveryError:
    """A refused egress or an unusable URL is permanent; connection trouble, timeouts and TLS errors are not."""
    where = redact_url(url)
    if isinstance(error, EgressRefused):
        listed = ", ".join(describe(a) for a in error.addresses)
        return DeliveryError(
            f"refused to connect to {where}: {error.host} resolves only to {listed}; Tidings connects only to "
            "public addresses unless TIDINGS_ALLOW_PRIVATE_NETWORKS includes the range",
            permanent=True,
        )
    if isinstance(
        error, (requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema, requests.exceptions.InvalidURL)
    ):
        return DeliveryError(f"cannot POST to {where}: not a valid http:// or https:// URL", permanent=True)
    cause = _scrub(str(root_cause(error)), url)
    if isinstance(error, requests.exceptions.SSLError):
        return DeliveryError(f"TLS error with {where} (certificate or handshake): {cause}")
    if isinstance(error, requests.exceptions.ConnectTimeout):
        return DeliveryError(f"connecting to {where} timed out (connect timeout {timeout[0]:g} s)")
    if isinstance(error, requests.exceptions.Timeout) or isinstance(root_cause(error), ReadTimeoutError):
        return DeliveryError(f"{where} did not answer in time (read timeout {timeout[1]:g} s)")
    if isinstance(error, requests.exceptions.ConnectionError):
        return DeliveryError(f"connection to {where} failed: {cause}")
    return DeliveryError(f"POST to {where} failed: {type(error).__name__}: {cause}")


def root_cause(error: BaseException) -> BaseException:
    """The innermost exception under requests' and urllib3's wrappers (an OSError, an ssl error...)."""
    seen = {id(error)}
    while True:
        reason = getattr(error, "reason", None)  # urllib3's MaxRetryError
        inner = (
            reason
            if isinstance(reason, BaseException)
            else next((arg for arg in error.args if isinstance(arg, BaseException)), error.__cause__)
        )
        if inner is None or id(inner) in seen:
            return error
        seen.add(id(inner))
        error = inner


def _scrub(text: str, url: str) -> str:
    """Belt and braces: urllib3 puts the request path in some messages."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return text.replace(url, "***")
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    text = text.replace(url, "***")
    return text.replace(path, "***") if len(path) > 1 else text
