"""The one HTTP client of the HTTP channels (Discord, signed webhooks).

Every worker thread gets its own pooled ``requests.Session``. Each request has
connect and read timeouts, never follows a redirect, always verifies the TLS
certificate (against TIDINGS_HTTP_CA_FILE when set) and ignores proxy settings
in the environment, since a proxy would connect on our behalf, past the check.

Egress check: Tidings connects only to public addresses, unless
TIDINGS_ALLOW_PRIVATE_NETWORKS lets a range back in (see egress.py).

URLs carry tokens (Discord's is a password), so no message here holds a full
URL: :func:`redact_url` cuts it down first.
"""

from __future__ import annotations

import logging
import threading
import urllib.parse

import requests
from urllib3.exceptions import ReadTimeoutError

from dispatcher.errors import DeliveryError
from dispatcher.settings import Settings

from .egress import EgressCheckingAdapter, EgressRefused, describe

#: redact_url keeps this many path segments: "/api/webhooks/<id>" of a Discord webhook URL.
KEPT_PATH_SEGMENTS = 3

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


# --- the egress check, inside urllib3's connections --------------------------------------------------------------


# --- the client ---------------------------------------------------------------------------------------------------


class HttpClient:
    """requests with one pooled Session per thread, timeouts, no redirects, egress checks."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.timeout = (settings.http_connect_timeout, settings.http_read_timeout)
        self.verify: bool | str = str(settings.http_ca_file) if settings.http_ca_file else True
        self._local = threading.local()
        self._sessions: set[requests.Session] = set()
        self._lock = threading.Lock()
        urllib3_log = logging.getLogger("urllib3.connectionpool")
        if not any(isinstance(f, HideUrlPaths) for f in urllib3_log.filters):
            urllib3_log.addFilter(HideUrlPaths())

    def post(self, url: str, *, body: bytes, headers: dict[str, str]) -> requests.Response:
        """POST; returns the response whatever its status (the caller interprets it).
        Raises DeliveryError(permanent=True) when the egress check refuses every address of the host
        (message names the host and the refused address, and mentions TIDINGS_ALLOW_PRIVATE_NETWORKS),
        DeliveryError(permanent=False) for connection errors, timeouts and TLS errors (message says which,
        and never contains the full URL: use redact_url)."""
        try:
            return self._session().post(url, data=body, headers=headers, timeout=self.timeout,
                                        allow_redirects=False)
        except requests.exceptions.RequestException as e:
            error = classify(e, url, self.timeout)
        # Raised outside the except block, so no traceback chains requests' messages, which hold the URL.
        raise error

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


def classify(error: requests.exceptions.RequestException, url: str,
             timeout: tuple[float, float]) -> DeliveryError:
    """A refused egress or an unusable URL is permanent; connection trouble, timeouts and TLS errors are not."""
    where = redact_url(url)
    if isinstance(error, EgressRefused):
        listed = ", ".join(describe(a) for a in error.addresses)
        return DeliveryError(
            f"refused to connect to {where}: {error.host} resolves only to {listed}; Tidings connects only to "
            "public addresses unless TIDINGS_ALLOW_PRIVATE_NETWORKS includes the range", permanent=True)
    if isinstance(error, (requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema,
                          requests.exceptions.InvalidURL)):
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
        inner = reason if isinstance(reason, BaseException) else next(
            (arg for arg in error.args if isinstance(arg, BaseException)), error.__cause__)
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
