"""Egress safety: connect only to public addresses, unless an operator allows a range.

The check runs inside the connection: it resolves the host once, skips every
refused address and connects the socket to an address that passed. A name that
resolves to a public address when checked and to a private one when connected
(DNS rebinding) cannot get by. ``EgressCheckingAdapter`` puts it under requests.

The same connections show each socket they open or send a request on to the
watcher of the request in progress (:func:`sockets_watched`), so that
HttpClient's total deadline can shut it down (see http.py).
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import requests
from requests.adapters import DEFAULT_POOLBLOCK, HTTPAdapter
from urllib3 import PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.connection import allowed_gai_family

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: RFC 6052's well-known NAT64 prefix: such an address reaches the IPv4 address it embeds.
NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")
CGNAT = ipaddress.ip_network("100.64.0.0/10")


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
    ipv6 = address if isinstance(address, ipaddress.IPv6Address) else None
    shown = f"::ffff:{ipv6.ipv4_mapped}" if ipv6 is not None and ipv6.ipv4_mapped else str(address)
    for kind, matches in (
        ("unspecified", judged.is_unspecified),
        ("loopback", judged.is_loopback),
        ("link-local", judged.is_link_local),
        ("multicast", judged.is_multicast),
        ("carrier-grade NAT", judged in CGNAT),
        ("reserved", judged.is_reserved),
    ):
        if matches:
            return f"{shown} ({kind})"
    return f"{shown} (private)"


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


_watching = threading.local()


@contextlib.contextmanager
def sockets_watched(watch: Callable[[socket.socket], None]) -> Iterator[None]:
    """Within it, this thread's checked connections pass `watch` every socket they open (before connecting)
    and the socket of a kept-alive connection they send a request on."""
    _watching.watch = watch
    try:
        yield
    finally:
        _watching.watch = None


def _show(sock: socket.socket) -> None:
    watch: Callable[[socket.socket], None] | None = getattr(_watching, "watch", None)
    if watch is not None:
        watch(sock)


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
            _show(sock)  # before connect() and the TLS handshake, so the deadline covers them too
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
                self, f"Connection to {self.host} timed out. (connect timeout={self.timeout})"
            ) from error
        if error is not None:
            raise NewConnectionError(self, f"Failed to establish a new connection: {error}") from error
        if refused:
            raise _AllAddressesRefused(self, self.host, refused)
        raise NewConnectionError(self, f"{self.host} resolved to no address")

    def request(self: Any, *args: Any, **kwargs: Any) -> None:
        if self.sock is not None:  # connected already: kept alive, or (HTTPS) just now, shown twice then
            _show(self.sock)
        super().request(*args, **kwargs)  # type: ignore[misc]


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

    def _new_pool(
        self, scheme: str, host: str, port: int, request_context: dict[str, Any] | None = None
    ) -> HTTPConnectionPool:
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

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = DEFAULT_POOLBLOCK, **pool_kwargs: Any
    ) -> None:
        self._pool_connections, self._pool_maxsize, self._pool_block = connections, maxsize, block
        self.poolmanager = _CheckedPoolManager(
            self.allowed_networks, num_pools=connections, maxsize=maxsize, block=block, **pool_kwargs
        )

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
