"""The HTTP client of the HTTP channels, against real HTTP(S) servers on loopback.

Only socket.getaddrinfo (the DNS seam) is ever patched: everything else is a
real connection, a real TLS handshake and a real server.
"""

from __future__ import annotations

import http.server
import ipaddress
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator

import pytest
from structlog.testing import capture_logs

from channels.egress import address_allowed
from channels.http import HttpClient, redact_url
from dispatcher.core.errors import DeliveryError
from dispatcher.core.settings import Settings
from tests.support.http import HttpServer, Reply
from tests.support.http import http_server as http_server  # a fixture
from tests.support.http import https_server as https_server  # a fixture
from tests.support.services import free_port
from tests.support.tls import LOOPBACK, Certificate
from tests.support.tls import certificate as certificate  # a fixture
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration

TOKEN = "s3cr3t-T0KEN"
#: Discord-like: the last path segment is the webhook's password.
PATH = f"/api/webhooks/123/{TOKEN}?wait=true"


# --- fixtures and helpers ---------------------------------------------------------------------------------------


@pytest.fixture
def make_client() -> Iterator[Callable[..., HttpClient]]:
    """make_client(TIDINGS_X="...", ...) -> an HttpClient with those settings, closed after the test."""
    clients: list[HttpClient] = []

    def make(**env: str) -> HttpClient:
        clients.append(HttpClient(Settings.from_env(env)))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


def post_error(client: HttpClient, url: str) -> DeliveryError:
    with pytest.raises(DeliveryError) as caught:
        client.post(url, body=b"{}", headers={"Content-Type": "application/json"})
    return caught.value


def assert_hides_the_token(error: DeliveryError) -> None:
    """Neither the message nor the traceback a log would print holds the URL's token."""
    assert TOKEN not in str(error)
    assert TOKEN not in "".join(traceback.format_exception(error))


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A listening socket on 127.0.0.1 that nobody accepts from: any connection stays queued for accept()."""
    sock = socket.create_server(("127.0.0.1", 0))
    sock.setblocking(False)
    yield sock
    sock.close()


def assert_nothing_connected(listener: socket.socket) -> None:
    # The kernel completes the handshake before connect() returns, so a connection would already be queued.
    with pytest.raises(BlockingIOError):
        listener.accept()[0].close()


def resolve(monkeypatch: pytest.MonkeyPatch, name: str, *answers: list[str]) -> list[str]:
    """Make DNS answer `name` with answers[0], then answers[1]...; returns the log of names looked up."""
    real_getaddrinfo = socket.getaddrinfo
    lookups: list[str] = []

    def getaddrinfo(host: str, port: int, *args: object, **kwargs: object) -> list[tuple]:
        if host != name:
            return real_getaddrinfo(host, port, *args, **kwargs)  # type: ignore[arg-type]
        lookups.append(host)
        addresses = answers[min(len(lookups), len(answers)) - 1]
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (a, port, 0, 0))
            if ":" in a
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in addresses
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return lookups


class CountingServer:
    """A keep-alive HTTP/1.1 server that records the client address of every TCP connection it accepts."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.connections: list[tuple[str, int]] = []
        counter = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: object) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def process_request(self, request: socket.socket, client_address: tuple[str, int]) -> None:  # type: ignore[override]
                counter.connections.append(client_address)
                super().process_request(request, client_address)

        self.httpd = Server((host, port), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{PATH}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def counting_server() -> Iterator[CountingServer]:
    server = CountingServer()
    yield server
    server.stop()


# --- address_allowed ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address", ["93.184.215.14", "8.8.8.8", "2606:4700::6810:84e5", "::ffff:8.8.8.8", "64:ff9b::808:808"]
)
def test_a_public_address_is_allowed(address: str) -> None:
    # given / when / then
    assert address_allowed(ipaddress.ip_address(address), ())


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "::1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "224.0.0.1",
        "0.0.0.0",
        "::",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "ff0e::1",
        "64:ff9b::a00:1",
        "2002:7f00:1::",
        "::7f00:1",
    ],
)
def test_a_loopback_private_link_local_cgnat_multicast_reserved_or_unspecified_address_is_refused(address: str) -> None:
    # given / when / then
    assert not address_allowed(ipaddress.ip_address(address), ())


@pytest.mark.parametrize(
    ("address", "allowed", "expected"),
    [
        ("127.0.0.1", "127.0.0.0/8", True),
        ("::ffff:127.0.0.1", "127.0.0.0/8", True),
        ("10.0.0.1", "127.0.0.0/8", False),
        ("10.20.30.40", "10.20.0.0/16", True),
        ("fd00::1", "fd00::/8", True),
        ("::1", "127.0.0.0/8", False),
    ],
)
def test_an_allowed_network_lets_its_addresses_back_in(address: str, allowed: str, expected: bool) -> None:
    # given
    networks = [ipaddress.ip_network(allowed)]
    # when / then
    assert address_allowed(ipaddress.ip_address(address), networks) is expected


# --- redact_url -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("https://discord.com/api/webhooks/123/TOKEN", "https://discord.com/api/webhooks/123/***"),
        ("https://discord.com/api/webhooks/123/TOKEN?wait=true", "https://discord.com/api/webhooks/123/***"),
        ("https://user:pa55@hooks.example.com:8443/a/b/c/d/e?sig=abc#part", "https://hooks.example.com:8443/a/b/c/***"),
        ("http://example.com/hooks/abc?key=secret", "http://example.com/hooks/***"),
        ("https://scores.example/api/hooks/TOKEN", "https://scores.example/api/hooks/***"),
        ("https://example.com/", "https://example.com"),
        ("https://example.com", "https://example.com"),
        ("http://[::1]:8080/a/b/c/d", "http://[::1]:8080/a/b/c/***"),
        ("no host at all", "<invalid URL>"),
    ],
)
def test_a_redacted_url_keeps_the_host_and_first_path_segments_but_never_the_last(url: str, redacted: str) -> None:
    # given / when / then
    assert redact_url(url) == redacted


# --- the egress check -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_given_default_settings_when_posting_to_loopback_then_it_is_refused_for_good_and_nothing_is_sent(
    scheme: str, request: pytest.FixtureRequest, make_client: Callable[..., HttpClient]
) -> None:
    # given
    server: HttpServer = request.getfixturevalue(f"{scheme}_server")
    client = make_client()
    # when
    error = post_error(client, server.url(PATH))
    # then
    assert error.permanent
    assert "127.0.0.1" in str(error) and "TIDINGS_ALLOW_PRIVATE_NETWORKS" in str(error)
    assert server.requests() == []
    assert_hides_the_token(error)


def test_given_default_settings_when_posting_to_localhost_then_the_resolved_address_is_refused(
    https_server: HttpServer, make_client: Callable[..., HttpClient]
) -> None:
    # given
    client = make_client()
    # when
    error = post_error(client, https_server.url(PATH, host="localhost"))
    # then
    assert error.permanent
    assert "localhost resolves only to 127.0.0.1 (loopback)" in str(error)
    assert https_server.requests() == []


def test_given_loopback_is_allowed_and_the_ca_is_trusted_when_posting_then_the_server_gets_body_and_headers(
    https_server: HttpServer, certificate: Certificate, make_client: Callable[..., HttpClient]
) -> None:
    # given
    client = make_client(**certificate.https_settings())
    https_server.reply_next(Reply(status=202, body=b'{"id": "1"}'))
    # when
    response = client.post(
        https_server.url(PATH),
        body=b'{"content": "hi"}',
        headers={"Content-Type": "application/json", "X-Tidings": "yes"},
    )
    # then
    assert response.status_code == 202 and response.json() == {"id": "1"}
    [received] = https_server.requests()
    assert received.method == "POST" and received.path == PATH
    assert received.body == b'{"content": "hi"}'
    assert received.headers["Content-Type"] == "application/json" and received.headers["X-Tidings"] == "yes"


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.5", "169.254.169.254", "::ffff:127.0.0.1", "::1"])
def test_given_a_public_looking_name_when_dns_answers_a_private_address_then_nothing_connects(
    address: str, listener: socket.socket, monkeypatch: pytest.MonkeyPatch, make_client: Callable[..., HttpClient]
) -> None:
    # given
    resolve(monkeypatch, "hooks.example.com", [address])
    client = make_client()
    # when
    error = post_error(client, f"https://hooks.example.com:{listener.getsockname()[1]}{PATH}")
    # then
    assert error.permanent
    assert "hooks.example.com" in str(error) and address in str(error)
    assert_nothing_connected(listener)
    assert_hides_the_token(error)


def test_given_dns_rebinding_when_a_name_first_resolves_to_an_allowed_address_then_the_socket_goes_there_only(
    listener: socket.socket, monkeypatch: pytest.MonkeyPatch, make_client: Callable[..., HttpClient]
) -> None:
    # given: an allowed server on 127.0.0.2 and a refused listener on 127.0.0.1, on the same port;
    # DNS answers the allowed address to the first lookup and loopback to any later one
    allowed = CountingServer("127.0.0.2", listener.getsockname()[1])
    try:
        lookups = resolve(monkeypatch, "rebind.example.com", ["127.0.0.2"], ["127.0.0.1"])
        client = make_client(TIDINGS_ALLOW_PRIVATE_NETWORKS="127.0.0.2/32")
        # when
        response = client.post(allowed.url(host="rebind.example.com"), body=b"{}", headers={})
        # then: one lookup, checked and connected to the same address
        assert response.status_code == 200
        assert lookups == ["rebind.example.com"]
        assert len(allowed.connections) == 1
        assert_nothing_connected(listener)
    finally:
        allowed.stop()


def test_given_dns_rebinding_when_the_connecting_lookup_answers_loopback_then_it_is_refused(
    listener: socket.socket, monkeypatch: pytest.MonkeyPatch, make_client: Callable[..., HttpClient]
) -> None:
    # given: a lookup made earlier (a "pre-check") saw a public address; the next one answers loopback
    resolve(monkeypatch, "rebind.example.com", ["93.184.215.14"], ["127.0.0.1"])
    socket.getaddrinfo("rebind.example.com", 443)
    client = make_client()
    # when
    error = post_error(client, f"http://rebind.example.com:{listener.getsockname()[1]}{PATH}")
    # then
    assert error.permanent and "127.0.0.1 (loopback)" in str(error)
    assert_nothing_connected(listener)


def test_given_a_name_resolving_to_refused_and_allowed_addresses_then_only_an_allowed_one_is_connected(
    counting_server: CountingServer,
    listener: socket.socket,
    monkeypatch: pytest.MonkeyPatch,
    make_client: Callable[..., HttpClient],
) -> None:
    # given: 10.0.0.1 (refused) comes first in the answer
    resolve(monkeypatch, "mixed.example.com", ["10.0.0.1", "127.0.0.1"])
    client = make_client(TIDINGS_ALLOW_PRIVATE_NETWORKS=LOOPBACK)
    # when
    response = client.post(counting_server.url(host="mixed.example.com"), body=b"{}", headers={})
    # then
    assert response.status_code == 200 and len(counting_server.connections) == 1


# --- TLS --------------------------------------------------------------------------------------------------------


def test_given_no_ca_file_when_the_server_certificate_is_from_an_unknown_ca_then_a_transient_tls_error_is_raised(
    https_server: HttpServer, make_client: Callable[..., HttpClient]
) -> None:
    # given
    client = make_client(TIDINGS_ALLOW_PRIVATE_NETWORKS=LOOPBACK)
    # when
    error = post_error(client, https_server.url(PATH))
    # then
    assert not error.permanent
    assert "TLS" in str(error) and "certificate" in str(error)
    assert https_server.requests() == []
    assert_hides_the_token(error)


def test_the_certificate_is_checked_against_the_host_name_not_the_address_connected_to(
    https_server: HttpServer,
    certificate: Certificate,
    monkeypatch: pytest.MonkeyPatch,
    make_client: Callable[..., HttpClient],
) -> None:
    # given: the certificate names 127.0.0.1 and localhost, not hooks.tidings.test, which resolves to 127.0.0.1
    resolve(monkeypatch, "hooks.tidings.test", ["127.0.0.1"])
    client = make_client(**certificate.https_settings())
    # when
    error = post_error(client, https_server.url(PATH, host="hooks.tidings.test"))
    response = client.post(https_server.url(PATH, host="localhost"), body=b"{}", headers={})
    # then
    assert not error.permanent and "certificate" in str(error) and "hooks.tidings.test" in str(error)
    assert response.status_code == 200 and len(https_server.requests()) == 1


# --- redirects, timeouts, refused connections --------------------------------------------------------------------


def test_a_redirect_is_returned_as_is_and_never_followed(make_client: Callable[..., HttpClient]) -> None:
    # given
    first, target = HttpServer().start(), HttpServer().start()
    try:
        first.reply_next(Reply(status=302, headers={"Location": target.url("/elsewhere")}, body=b""))
        client = make_client(TIDINGS_ALLOW_PRIVATE_NETWORKS=LOOPBACK)
        # when
        response = client.post(first.url(PATH), body=b"{}", headers={})
        # then
        assert response.status_code == 302 and response.headers["Location"] == target.url("/elsewhere")
        assert len(first.requests()) == 1 and target.requests() == []
    finally:
        first.stop()
        target.stop()


def test_given_a_server_slower_than_the_read_timeout_then_a_transient_error_comes_quickly(
    http_server: HttpServer, make_client: Callable[..., HttpClient]
) -> None:
    # given
    http_server.reply_next(Reply(delay=3.0))
    client = make_client(TIDINGS_ALLOW_PRIVATE_NETWORKS=LOOPBACK, TIDINGS_HTTP_READ_TIMEOUT="0.5")
    started = time.monotonic()
    # when
    error = post_error(client, http_server.url(PATH))
    # then
    assert time.monotonic() - started < 2.0
    assert not error.permanent and "read timeout 0.5 s" in str(error)
    assert_hides_the_token(error)


def test_given_a_closed_port_in_an_allowed_network_then_the_refused_connection_is_a_transient_error(
    make_client: Callable[..., HttpClient],
) -> None:
    # given
    client = make_client(TIDINGS_ALLOW_PRIVATE_NETWORKS=LOOPBACK)
    # when
    error = post_error(client, f"http://127.0.0.1:{free_port()}{PATH}")
    # then
    assert not error.permanent
    assert "connection to" in str(error) and "refused" in str(error).lower()
    assert_hides_the_token(error)


def test_an_invalid_url_is_a_permanent_error_that_does_not_repeat_it(make_client: Callable[..., HttpClient]) -> None:
    # given
    client = make_client()
    # when
    error = post_error(client, f"ftp://files.example.com{PATH}")
    # then
    assert error.permanent
    assert_hides_the_token(error)


# --- the total deadline and the response size cap ---------------------------------------------------------------

TOTAL = 2.0  # seconds: TIDINGS_HTTP_TOTAL_TIMEOUT in the deadline tests
MARGIN = 2.0  # seconds a cut may come after the deadline: a bound on a timeout, not a speed test
TRICKLE = 1.0  # seconds per byte: far within the 10 s read timeout, which never trips


@pytest.fixture
def deadline_client(certificate: Certificate, make_client: Callable[..., HttpClient]) -> HttpClient:
    return make_client(
        **certificate.https_settings(),
        TIDINGS_HTTP_CONNECT_TIMEOUT="1",
        TIDINGS_HTTP_TOTAL_TIMEOUT=str(TOTAL),
    )


def timed_post_error(client: HttpClient, url: str) -> tuple[DeliveryError, float]:
    started = time.monotonic()
    error = post_error(client, url)
    return error, time.monotonic() - started


def timers() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if isinstance(thread, threading.Timer)]


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize(
    "reply",
    [Reply(trickle_headers=TRICKLE), Reply(body=b"x" * 100, trickle_body=TRICKLE)],
    ids=["status-line-and-headers", "body"],
)
def test_a_server_trickling_its_answer_a_byte_a_second_is_cut_off_at_the_total_deadline(
    scheme: str, reply: Reply, request: pytest.FixtureRequest, deadline_client: HttpClient
) -> None:
    # given a server that sends a byte a second (about 100 s in all), from its status line or in its body
    server: HttpServer = request.getfixturevalue(f"{scheme}_server")
    server.reply_next(reply)
    # when
    error, elapsed = timed_post_error(deadline_client, server.url(PATH))
    # then the post fails, transiently, at the deadline, and the server finds its connection gone
    assert elapsed < TOTAL + MARGIN
    assert not error.permanent
    assert f"did not finish within {TOTAL:g} s (TIDINGS_HTTP_TOTAL_TIMEOUT)" in str(error)
    assert redact_url(server.url(PATH)) in str(error)
    assert_hides_the_token(error)
    wait_for(lambda: server.cut_short, timeout=TRICKLE + 2, what="the server to find its answer cut short")


def test_the_deadline_cuts_a_request_on_a_kept_alive_connection_and_leaves_no_thread_behind(
    https_server: HttpServer, deadline_client: HttpClient
) -> None:
    # given a first answer in full, then a trickled one
    https_server.reply_next(Reply(body=b'{"ok": true}'), Reply(trickle_headers=TRICKLE))
    assert deadline_client.post(https_server.url(PATH), body=b"{}", headers={}).json() == {"ok": True}
    # when the second request goes on the same connection
    error, elapsed = timed_post_error(deadline_client, https_server.url(PATH))
    # then it is cut at the deadline, and no timer thread is left running
    first, second = https_server.requests()
    assert first.client_port == second.client_port, "one kept-alive connection"
    assert elapsed < TOTAL + MARGIN and "TIDINGS_HTTP_TOTAL_TIMEOUT" in str(error)
    wait_for(lambda: not timers(), timeout=1, what="no deadline timer left running")


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_over_the_cap_is_not_read_the_status_is_kept_and_the_connection_is_closed(
    chunked: bool, http_server: HttpServer, make_client: Callable[..., HttpClient]
) -> None:
    # given a 200 whose body is 64 MiB, announced by its Content-Length or not at all (chunked); the cap is 64 KiB
    http_server.reply_next(Reply(200, {"X-Answer": "yes"}, b"x" * 65536, repeat=1024, chunked=chunked))
    client = make_client(TIDINGS_ALLOW_PRIVATE_NETWORKS=LOOPBACK)
    # when
    with capture_logs() as logs:
        response = client.post(http_server.url(PATH), body=b"{}", headers={})
    # then the caller gets the status and headers, no body, and a warning naming the cap
    assert response.status_code == 200 and response.headers["X-Answer"] == "yes"
    assert response.content == b"" and response.text == ""
    [warning] = [entry for entry in logs if entry["event"] == "http_response_too_large"]
    assert warning["log_level"] == "warning" and "65536 bytes (TIDINGS_HTTP_MAX_RESPONSE_BYTES)" in warning["limit"]
    assert TOKEN not in str(warning)
    # and the server finds its answer cut short; the next post gets a new connection
    wait_for(lambda: http_server.cut_short, timeout=5, what="the server to find its answer cut short")
    assert client.post(http_server.url(PATH), body=b"{}", headers={}).json() == {}
    first, second = http_server.requests()
    assert first.client_port != second.client_port


def test_a_body_of_exactly_the_cap_is_read_whole_and_one_byte_more_is_dropped(
    http_server: HttpServer, make_client: Callable[..., HttpClient]
) -> None:
    # given a cap of 1000 bytes, and chunked answers of 1000 and 1001 bytes
    client = make_client(TIDINGS_ALLOW_PRIVATE_NETWORKS=LOOPBACK, TIDINGS_HTTP_MAX_RESPONSE_BYTES="1000")
    http_server.reply_next(
        Reply(body=b"y" * 100, repeat=10, chunked=True), Reply(body=b"y" * 77 + b"z" * 924, chunked=True)
    )
    # when
    at_the_cap = client.post(http_server.url(PATH), body=b"{}", headers={})
    over_it = client.post(http_server.url(PATH), body=b"{}", headers={})
    # then
    assert at_the_cap.content == b"y" * 1000
    assert over_it.status_code == 200 and over_it.content == b""


# --- sessions and pooling ---------------------------------------------------------------------------------------


def test_several_posts_from_one_thread_reuse_one_connection(
    counting_server: CountingServer, make_client: Callable[..., HttpClient]
) -> None:
    # given
    client = make_client(TIDINGS_ALLOW_PRIVATE_NETWORKS=LOOPBACK)
    # when
    for _ in range(3):
        assert client.post(counting_server.url(), body=b"{}", headers={}).status_code == 200
    # then
    assert len(counting_server.connections) == 1


def test_two_threads_get_two_sessions_each_with_its_own_connection(
    counting_server: CountingServer, make_client: Callable[..., HttpClient]
) -> None:
    # given
    client = make_client(TIDINGS_ALLOW_PRIVATE_NETWORKS=LOOPBACK)
    sessions = []

    def post_twice() -> None:
        for _ in range(2):
            client.post(counting_server.url(), body=b"{}", headers={})
        sessions.append(client._session())

    # when: one thread after the other, so a shared pool would have reused the first connection
    for _ in range(2):
        thread = threading.Thread(target=post_twice)
        thread.start()
        thread.join(timeout=5)
    # then
    assert len(sessions) == 2 and sessions[0] is not sessions[1]
    assert len(counting_server.connections) == 2


def test_after_close_the_next_post_opens_a_new_connection(
    counting_server: CountingServer, make_client: Callable[..., HttpClient]
) -> None:
    # given
    client = make_client(TIDINGS_ALLOW_PRIVATE_NETWORKS=LOOPBACK)
    client.post(counting_server.url(), body=b"{}", headers={})
    # when
    client.close()
    response = client.post(counting_server.url(), body=b"{}", headers={})
    # then
    assert response.status_code == 200 and len(counting_server.connections) == 2


def test_proxy_settings_in_the_environment_are_ignored(
    counting_server: CountingServer, monkeypatch: pytest.MonkeyPatch, make_client: Callable[..., HttpClient]
) -> None:
    # given: a proxy that does not exist; using it would fail
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    client = make_client(TIDINGS_ALLOW_PRIVATE_NETWORKS=LOOPBACK)
    # when
    response = client.post(counting_server.url(), body=b"{}", headers={})
    # then
    assert response.status_code == 200 and len(counting_server.connections) == 1
