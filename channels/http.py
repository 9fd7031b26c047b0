"""The one HTTP client of the HTTP channels (Discord, signed webhooks).

Every worker thread gets its own pooled ``requests.Session``. Each request has
connect and read timeouts, never follows a redirect, always verifies the TLS
certificate (against TIDINGS_HTTP_CA_FILE when set) and ignores proxy settings
in the environment, since a proxy would connect on our behalf, past the check.

Egress check: Tidings connects only to public addresses, unless
TIDINGS_ALLOW_PRIVATE_NETWORKS lets a range back in. The check runs inside the
connection: it resolves the host once, skips every refused address and connects
the socket to an address that passed. A name that resolves to a public address
when checked and to a private one when connected (DNS rebinding) cannot get by.

URLs carry tokens (Discord's is a password), so no message here holds a full
URL: :func:`redact_url` cuts it down first.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import sys
import threading
import urllib.parse
from collections.abc import Sequence
from typing import Any

import requests
from requests.adapters import DEFAULT_POOLBLOCK, HTTPAdapter
from urllib3 import PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError, ReadTimeoutError
from urllib3.util.connection import allowed_gai_family

from dispatcher.errors import DeliveryError
from dispatcher.settings import Settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: RFC 6052's well-known NAT64 prefix: such an address reaches the IPv4 address it embeds.
NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")
CGNAT = ipaddress.ip_network("100.64.0.0/10")
#: redact_url keeps this many path segments: "/api/webhooks/<id>" of a Discord webhook URL.
KEPT_PATH_SEGMENTS = 3


class EgressRefused(requests.exceptions.ConnectionError):
    """The target resolved only to addresses Tidings may not connect to."""

    host: str = ""
    addresses: tuple[Address, ...] = ()


def address_allowed(address: Address, allowed: Sequence[Network]) -> bool:
    """True if `address` is public (ip.is_global and not multicast; IPv4-mapped IPv6 judged by its IPv4),
    or inside an allowed network.

    Reserved addresses are refused too, and NAT64 (64:ff9b::/96) and 6to4
    (2002::/16) addresses are judged, like IPv4-mapped ones, by the IPv4
    address they lead to.
    """
    embedded = _embedded_ipv4(address)
    candidates = [address] if embedded is None else [address, embedded]
    if any(candidate in network for candidate in candidates for network in allowed):
        return True
    judged = embedded or address
    return judged.is_global and not judged.is_multicast and not judged.is_reserved


def _embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, NAT64, 6to4), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64_PREFIX:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def describe(address: Address) -> str:
    """A refused address and why it is not public, for error messages: '::ffff:127.0.0.1 (loopback)'."""
    judged = _embedded_ipv4(address) or address
    shown = f"::ffff:{address.ipv4_mapped}" if getattr(address, "ipv4_mapped", None) else str(address)
    for kind, matches in (("unspecified", judged.is_unspecified), ("loopback", judged.is_loopback),
                          ("link-local", judged.is_link_local), ("multicast", judged.is_multicast),
                          ("carrier-grade NAT", judged in CGNAT), ("reserved", judged.is_reserved)):
        if matches:
            return f"{shown} ({kind})"
    return f"{shown} (private)"


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


class _AllAddressesRefused(NewConnectionError):
    """urllib3's view of EgressRefused: the adapter turns it into that."""

    def __init__(self, conn: Any, host: str, addresses: Sequence[Address]) -> None:
        self.host = host
        self.addresses = tuple(dict.fromkeys(addresses))
        listed = ", ".join(describe(a) for a in self.addresses)
        self.detail = f"{host} resolves only to addresses Tidings may not connect to: {listed}"
        super().__init__(conn, self.detail)

    def __reduce__(self) -> Any:
        return self.__class__, (None, self.host, self.addresses)


class _CheckedConnection:
    """Mixed into urllib3's connections: connect only to an address that passes the egress check.

    HTTPSConnection.connect() wraps the socket this returns and verifies the
    certificate against the host name (self.host), not the address.
    """

    allowed_networks: tuple[Network, ...]

    def __init__(self, *args: Any, allowed_networks: Sequence[Network] = (), **kwargs: Any) -> None:
        self.allowed_networks = tuple(allowed_networks)
        super().__init__(*args, **kwargs)

    def _new_conn(self: Any) -> socket.socket:
        # Mirrors urllib3.util.connection.create_connection, plus the check.
        host = self._dns_host.strip("[]")
        try:
            resolved = socket.getaddrinfo(host, self.port, allowed_gai_family(), socket.SOCK_STREAM)
        except socket.gaierror as e:
            raise NameResolutionError(self.host, self, e) from e
        refused: list[Address] = []
        error: OSError | None = None
        for family, kind, proto, _, sockaddr in resolved:
            address = ipaddress.ip_address(sockaddr[0])
            if not address_allowed(address, self.allowed_networks):
                refused.append(address)
                continue
            sock = socket.socket(family, kind, proto)
            try:
                for option in self.socket_options or ():
                    sock.setsockopt(*option)
                sock.settimeout(self.timeout)
                if self.source_address:
                    sock.bind(self.source_address)
                sock.connect(sockaddr)
            except OSError as e:
                sock.close()
                error = e
                continue
            sys.audit("http.client.connect", self, self.host, self.port)
            return sock
        if isinstance(error, TimeoutError):
            raise ConnectTimeoutError(
                self, f"Connection to {self.host} timed out. (connect timeout={self.timeout})") from error
        if error is not None:
            raise NewConnectionError(self, f"Failed to establish a new connection: {error}") from error
        if refused:
            raise _AllAddressesRefused(self, self.host, refused)
        raise NewConnectionError(self, f"{self.host} resolved to no address")


class _CheckedHTTPConnection(_CheckedConnection, HTTPConnection):
    pass


class _CheckedHTTPSConnection(_CheckedConnection, HTTPSConnection):
    pass


class _CheckedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _CheckedHTTPConnection


class _CheckedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _CheckedHTTPSConnection


class _CheckedPoolManager(PoolManager):
    """A PoolManager whose pools make checked connections with our allowed networks."""

    def __init__(self, allowed_networks: tuple[Network, ...], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.allowed_networks = allowed_networks
        self.pool_classes_by_scheme = {"http": _CheckedHTTPConnectionPool, "https": _CheckedHTTPSConnectionPool}

    def _new_pool(self, scheme: str, host: str, port: int,
                  request_context: dict[str, Any] | None = None) -> HTTPConnectionPool:
        pool = super()._new_pool(scheme, host, port, request_context)
        # Not through connection_pool_kw: every key there must be a field of urllib3's PoolKey.
        pool.conn_kw["allowed_networks"] = self.allowed_networks
        return pool


class EgressCheckingAdapter(HTTPAdapter):
    """requests' HTTPAdapter with the egress check on every new connection; no proxies."""

    __attrs__ = [*HTTPAdapter.__attrs__, "allowed_networks"]

    def __init__(self, allowed_networks: Sequence[Network] = ()) -> None:
        self.allowed_networks = tuple(allowed_networks)  # init_poolmanager, called below, needs it
        super().__init__()

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = DEFAULT_POOLBLOCK,
                         **pool_kwargs: Any) -> None:
        self._pool_connections, self._pool_maxsize, self._pool_block = connections, maxsize, block
        self.poolmanager = _CheckedPoolManager(self.allowed_networks, num_pools=connections, maxsize=maxsize,
                                               block=block, **pool_kwargs)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        raise requests.exceptions.ProxyError("proxies are not supported: they would bypass the egress check")

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        try:
            return super().send(request, *args, **kwargs)
        except requests.exceptions.ConnectionError as e:
            reason = getattr(e.args[0], "reason", None) if e.args else None
            if not isinstance(reason, _AllAddressesRefused):
                raise
            refused = EgressRefused(reason.detail, request=request)
            refused.host, refused.addresses = reason.host, reason.addresses
            raise refused from e


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
