"""Outages of what Tidings talks to: every delivery lands within its retry budget, the rest keeps flowing.

The processes run as the Procfile runs them (tests/support/procfile.py reads it): a `worker` group
(ingest, in-app, maintenance), a `sender` group (email) and a `hooks` group (Discord, webhooks). An
outage lasts its full length on the clock; meanwhile a probe published every few seconds must reach
its channels promptly.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from email.message import EmailMessage

import pytest
from standardwebhooks import Webhook

from dispatcher.amqp.publisher import build_event
from dispatcher.commands.endpoints import new_secret
from dispatcher.core.settings import Settings
from dispatcher.storage.models import Delivery, DeliveryStatus, Event, InboxItem, User, WebhookEndpoint
from tests.support.deployment import Deployment
from tests.support.http import HttpServer, Received, Reply
from tests.support.procfile import start_procfile
from tests.support.publishing import publish_as_tidings, publish_event_as_tidings
from tests.support.rabbit_node import port_outside_the_ephemeral_range
from tests.support.smtp import SmtpServer
from tests.support.tls import Certificate
from tests.support.tls import certificate as certificate  # a fixture
from tests.support.wait import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OUTAGE = 60.0  # seconds, on the clock
PROBE_EVERY = 2.0  # seconds between probes during an outage
PROMPT = 5.0  # seconds within which a probe must reach every channel it goes to
USERS = ["ana", "bo", "cara"]
SECRET = new_secret()
SOURCE = "/outages"


# --- The outside world ---------------------------------------------------------------------------


class FlakySmtp:
    """An SMTP server on a fixed port that goes down and comes back (a new server on the same port)."""

    def __init__(self) -> None:
        self.port = port_outside_the_ephemeral_range()
        self.servers = [SmtpServer(port=self.port).start()]
        self.up = True

    def go_down(self) -> None:
        self.servers[-1].stop()
        self.up = False

    def come_back(self) -> None:
        self.servers.append(SmtpServer(port=self.port).start())
        self.up = True

    @property
    def messages(self) -> list[EmailMessage]:
        return [message for server in self.servers for message in server.messages]

    def close(self) -> None:
        if self.up:
            self.servers[-1].stop()


class PeerRecordingServer(HttpServer):
    """HttpServer that also notes each request's client port as the header X-Test-Client-Port.

    Each hooks thread keeps its own connection, so the port tells one thread's requests apart.
    """

    def __init__(self, certificate: Certificate) -> None:
        super().__init__(certificate)
        handler = self.httpd.RequestHandlerClass

        class PeerRecordingHandler(handler):  # type: ignore[misc, valid-type]
            def do_POST(self) -> None:
                self.headers["X-Test-Client-Port"] = str(self.client_address[1])
                super().do_POST()

        self.httpd.RequestHandlerClass = PeerRecordingHandler


@pytest.fixture
def receiver(certificate: Certificate) -> Iterator[PeerRecordingServer]:
    with PeerRecordingServer(certificate) as server:
        yield server


@pytest.fixture
def flaky_smtp() -> Iterator[FlakySmtp]:
    smtp = FlakySmtp()
    yield smtp
    smtp.close()


@pytest.fixture
def outside(deployment: Deployment, certificate: Certificate) -> Deployment:
    """A deployment that may reach loopback over HTTPS, trusting the test certificate."""
    deployment.configure(**certificate.https_settings())
    return deployment


# --- Helpers -------------------------------------------------------------------------------------


def publish(deployment: Deployment, type_: str, data: dict) -> str:
    return publish_event_as_tidings(deployment, type_, data, source=SOURCE)


def publish_many(deployment: Deployment, type_: str, ids: list[str], data: Callable[[int], dict]) -> None:
    """One event of ``type_`` per id, the n-th with ``data(n)``, on one connection."""
    events = (build_event(type_, data(n), source=SOURCE, id=event_id) for n, event_id in enumerate(ids))
    publish_as_tidings(deployment, *events)


def add_users(deployment: Deployment, **fields: dict) -> None:
    for user, data in fields.items():
        publish(deployment, "tidings.user.upsert", {"id": user, **data})
    wait_for(lambda: User.select().count() == len(fields), what="the users")


def add_endpoint(deployment: Deployment, url: str) -> None:
    publish(deployment, "tidings.webhook.upsert", {"id": "scores", "url": url, "secret": SECRET, "types": ["match.*"]})
    wait_for(lambda: WebhookEndpoint.select().count() == 1, what="the webhook endpoint")


def deliveries(channel: str, event_ids: list[str], status: str | None = None) -> list[Delivery]:
    query = Delivery.select().join(Event).where(Delivery.channel == channel, Event.event_id.in_(event_ids))
    if status is not None:
        query = query.where(Delivery.status == status)
    return list(query)


def count(channel: str, event_ids: list[str], status: str = DeliveryStatus.SENT) -> int:
    return len(deliveries(channel, event_ids, status))


def delivered(event_id: str, channels: list[str]) -> bool:
    return all(count(channel, [event_id]) >= 1 for channel in channels)


def probe_until(deadline: float, probe: Callable[[int], str], channels: list[str]) -> list[float]:
    """Until ``deadline``, publish a probe every PROBE_EVERY s; each must reach ``channels`` within PROMPT s.

    Returns each probe's latency (publish to every channel's delivery recorded).
    """
    latencies: list[float] = []
    while time.monotonic() < deadline:
        started = time.monotonic()
        event_id = probe(len(latencies))
        wait_for(
            lambda event_id=event_id: delivered(event_id, channels),
            timeout=PROMPT,
            interval=0.05,
            what=f"probe {len(latencies)} to reach {channels} during the outage",
        )
        latencies.append(time.monotonic() - started)
        time.sleep(max(0.0, min(started + PROBE_EVERY, deadline) - time.monotonic()))  # paces the probes
    return latencies


def finish_times(conditions: dict[str, Callable[[], bool]], *, timeout: float) -> dict[str, float]:
    """Seconds until each condition first holds, polled together."""
    started, done = time.monotonic(), {}

    def all_done() -> bool:
        for name, condition in conditions.items():
            if name not in done and condition():
                done[name] = time.monotonic() - started
        return len(done) == len(conditions)

    wait_for(all_done, timeout=timeout, interval=0.05, what=f"{', '.join(conditions)} to finish")
    return done


def delivery_id(message: EmailMessage) -> int:
    """The delivery id in a Tidings Message-ID, <tidings.<delivery id>.<digest>@domain>."""
    return int(str(message["Message-ID"]).strip("<>").split(".")[1])


def min_email_budget(settings: Settings) -> float:
    """The shortest time an email delivery keeps being retried: every backoff at its lowest."""
    return sum(
        min(settings.retry_min_backoff * 2 ** (attempt - 1), settings.retry_max_backoff)
        for attempt in range(1, settings.retry_max + 1)
    )


# --- The SMTP server down for a minute -----------------------------------------------------------

EMAIL_EVENTS = 20


def test_an_smtp_server_down_for_a_minute_gets_every_email_once_while_in_app_and_webhooks_go_on(
    outside: Deployment, flaky_smtp: FlakySmtp, receiver: HttpServer
) -> None:
    # given the Procfile's groups, retries whose budget outlasts the outage, three users with email addresses,
    # a healthy webhook receiver for match.*, and sender threads holding SMTP connections already
    outside.configure(
        TIDINGS_SMTP_URL=f"smtp://127.0.0.1:{flaky_smtp.port}",
        TIDINGS_RETRY_MIN_BACKOFF="1",
        TIDINGS_RETRY_MAX_BACKOFF="10",
        TIDINGS_RETRY_MAX="20",
    )
    assert min_email_budget(outside.settings) >= 2 * OUTAGE
    start_procfile(outside)
    add_users(outside, **{user: {"email": f"{user}@example.com"} for user in USERS})
    add_endpoint(outside, receiver.url("/hooks"))
    warm_up = publish(outside, "team.invite.sent", {"recipients": USERS, "team_name": "Owls", "inviter_name": "Mira"})
    wait_for(lambda: count("email", [warm_up]) == len(USERS), what="the emails before the outage")

    # when the SMTP server goes down for a minute, just as a burst of events comes in
    flaky_smtp.go_down()
    back_at = time.monotonic() + OUTAGE
    ids = [f"outage-{n}" for n in range(EMAIL_EVENTS)]
    publish_many(
        outside,
        "team.invite.sent",
        ids,
        lambda n: {"recipients": USERS, "team_name": f"Team {n}", "inviter_name": "Mira"},
    )

    # then meanwhile every in-app row arrives promptly, and probes reach in-app and the webhook receiver
    wait_for(lambda: count("in_app", ids) == EMAIL_EVENTS * len(USERS), timeout=PROMPT, what="the burst's in-app rows")
    latencies = probe_until(
        back_at,
        lambda n: publish(
            outside, "match.started", {"recipients": ["ana"], "tournament_name": "Cup", "opponent_name": f"Rival {n}"}
        ),
        ["in_app", "webhook"],
    )
    assert count("email", ids) == 0
    retrying = wait_for(
        lambda: (
            len(deliveries("email", ids, DeliveryStatus.PENDING)) == EMAIL_EVENTS * len(USERS)
            and deliveries("email", ids)
        ),
        what="every email waiting for a retry, none given up",
    )
    assert {d.last_error.partition(":")[0] for d in retrying} == {"SMTP connection failed"}

    # when the server comes back on the same port
    flaky_smtp.come_back()
    back = time.monotonic()

    # then every email goes out within a backoff, each exactly once
    wait_for(
        lambda: count("email", ids) == EMAIL_EVENTS * len(USERS),
        timeout=outside.settings.retry_max_backoff + 20,
        interval=0.1,
        what="every email after the outage",
    )
    recovered_in = time.monotonic() - back
    emails = deliveries("email", ids)
    per_delivery = Counter(delivery_id(m) for m in flaky_smtp.messages)
    assert {d.id: per_delivery[d.id] for d in emails} == {d.id: 1 for d in emails}
    assert sum(per_delivery.values()) == len(USERS) * (EMAIL_EVENTS + 1), "nothing but the warm-up and the burst"
    assert InboxItem.select().join(Delivery).join(Event).where(Event.event_id.in_(ids)).count() == EMAIL_EVENTS * 3
    attempts = sorted(d.attempts for d in emails)
    print(
        f"\nSMTP down {OUTAGE:.0f} s: {len(latencies)} probes (in-app + webhook) during it, latency max "
        f"{max(latencies):.2f} s, mean {sum(latencies) / len(latencies):.2f} s; every email sent "
        f"{recovered_in:.1f} s after the server came back; attempts per email {attempts[0]}–{attempts[-1]}"
    )


# --- A webhook receiver answering 500 for a minute -----------------------------------------------

WEBHOOK_EVENTS = 10
WEBHOOK_SCHEDULE = "0,2,5,10,20,30,30,30"  # attempts at 0, 2, 7, 17, 37, 67, 97 and 127 s
LONGEST_WAIT = max(float(s) for s in WEBHOOK_SCHEDULE.split(","))


def test_a_webhook_receiver_failing_for_a_minute_gets_each_event_once_while_in_app_and_email_go_on(
    outside: Deployment, smtp_server: SmtpServer, receiver: HttpServer
) -> None:
    # given the Procfile's groups, a webhook schedule that outlasts the outage, and a receiver answering 500
    outside.configure(TIDINGS_WEBHOOK_RETRY_SCHEDULE=WEBHOOK_SCHEDULE)
    assert sum(outside.settings.webhook_retry_schedule) >= 2 * OUTAGE
    start_procfile(outside)
    add_users(outside, ana={"email": "ana@example.com"})
    add_endpoint(outside, receiver.url("/hooks"))
    receiver.default = Reply(500)

    # when match results come in while the receiver fails for a minute
    fixed_at = time.monotonic() + OUTAGE
    ids = [f"result-{n}" for n in range(WEBHOOK_EVENTS)]
    publish_many(
        outside,
        "match.completed",
        ids,
        lambda n: {"recipients": ["ana"], "tournament_name": "Cup", "winner_name": f"Team {n}"},
    )

    # then meanwhile their in-app rows and emails arrive promptly, and so do probes
    wait_for(
        lambda: count("in_app", ids) == WEBHOOK_EVENTS and count("email", ids) == WEBHOOK_EVENTS,
        timeout=PROMPT,
        what="in-app rows and emails while the receiver fails",
    )
    latencies = probe_until(
        fixed_at,
        lambda n: publish(
            outside, "team.invite.sent", {"recipients": ["ana"], "team_name": f"Team {n}", "inviter_name": "Mira"}
        ),
        ["in_app", "email"],
    )
    assert count("webhook", ids) == 0
    wait_for(
        lambda: len(deliveries("webhook", ids, DeliveryStatus.PENDING)) == WEBHOOK_EVENTS,
        what="every webhook waiting for a retry, none given up",
    )

    # when the receiver is fixed
    with receiver.lock:
        receiver.default = Reply(200)
        failed = len(receiver.received)  # the requests before this one were answered 500
    fixed = time.monotonic()

    # then every event is delivered once, its failed attempts carrying the same webhook-id
    wait_for(
        lambda: count("webhook", ids) == WEBHOOK_EVENTS,
        timeout=LONGEST_WAIT + 15,
        interval=0.1,
        what="every webhook after the receiver is fixed",
    )
    recovered_in = time.monotonic() - fixed
    requests = receiver.requests()
    succeeded = Counter(r.headers["webhook-id"] for r in requests[failed:])
    assert list(succeeded.values()) == [1] * WEBHOOK_EVENTS
    assert {r.headers["webhook-id"] for r in requests[:failed]} <= set(succeeded)
    assert {Webhook(SECRET).verify(r.body, r.headers)["id"] for r in requests[failed:]} == set(ids)
    rows = deliveries("webhook", ids)
    assert sum(d.attempts for d in rows) == len(requests), "each request is a recorded attempt"
    endpoint = WebhookEndpoint.get()
    assert endpoint.enabled and endpoint.failing_since is None
    attempts = sorted(d.attempts for d in rows)
    print(
        f"\nwebhook receiver failing {OUTAGE:.0f} s: {failed} requests answered 500, {len(latencies)} probes "
        f"(in-app + email) during it, latency max {max(latencies):.2f} s; every webhook sent {recovered_in:.1f} s "
        f"after the fix; attempts per event {attempts[0]}–{attempts[-1]}"
    )


# --- A storm of Discord 429s ---------------------------------------------------------------------

DISCORD_EVENTS = 10
STORM = 15  # the first requests answered 429
RETRY_AFTER = 1.0  # seconds, in each 429's body
IN_FLIGHT = 0.5  # seconds: a request sent by another thread before the 429 came back may arrive this late


def rate_limited() -> Reply:
    body = {"message": "You are being rate limited.", "retry_after": RETRY_AFTER, "global": False}
    return Reply(429, {"Content-Type": "application/json"}, json.dumps(body).encode())


def rate_limit_violations(requests: list[Received], limited: int) -> tuple[list[str], float]:
    """Requests that came too soon after one of the first ``limited`` (the 429s), and how late the
    latest in-flight request arrived.

    On the connection that got the 429, the next request must wait RETRY_AFTER. On the others, a
    request may arrive within IN_FLIGHT (it was sent before the 429 came back); later than that but
    before RETRY_AFTER, it ignored the shared limit.
    """
    violations, latest_in_flight = [], 0.0
    for n, rejected in enumerate(requests[:limited]):
        port = rejected.headers["X-Test-Client-Port"]
        same = [r for r in requests if r.at > rejected.at and r.headers["X-Test-Client-Port"] == port]
        if same and same[0].at - rejected.at < RETRY_AFTER:
            violations.append(f"429 #{n}: the same thread called again after {same[0].at - rejected.at:.3f} s")
        for other in requests:
            gap = other.at - rejected.at
            if other.headers["X-Test-Client-Port"] != port and 0 < gap < RETRY_AFTER:
                if gap > IN_FLIGHT:
                    violations.append(f"429 #{n}: another thread called after {gap:.3f} s")
                latest_in_flight = max(latest_in_flight, gap)
    return violations, latest_in_flight


def test_a_storm_of_discord_429s_is_waited_out_each_message_posted_once_and_in_app_goes_on(
    outside: Deployment, smtp_server: SmtpServer, receiver: HttpServer
) -> None:
    # given the Procfile's groups, a user with a Discord webhook who wants invites there,
    # and a webhook answering 429 (retry after 1 s) to the first 15 requests
    outside.configure(TIDINGS_RETRY_MAX="20")
    start_procfile(outside)
    add_users(outside, ana={"email": "ana@example.com", "discord_webhook_url": receiver.url("/api/webhooks/42/TOKEN")})
    publish(
        outside,
        "tidings.preferences.set",
        {"user": "ana", "preferences": [{"type": "team.invite.sent", "channel": "discord", "enabled": True}]},
    )
    wait_for(lambda: Event.select().count() == 2, what="the preference")
    receiver.reply_next(*[rate_limited()] * STORM)

    # when invitations come in
    ids = [f"invite-{n}" for n in range(DISCORD_EVENTS)]
    publish_many(
        outside,
        "team.invite.sent",
        ids,
        lambda n: {"recipients": ["ana"], "team_name": f"Team {n}", "inviter_name": "Mira"},
    )

    # then in-app is not held up by the storm
    done = finish_times(
        {
            channel: lambda channel=channel: count(channel, ids) == DISCORD_EVENTS
            for channel in ("in_app", "email", "discord")
        },
        timeout=60,
    )
    assert done["in_app"] < min(PROMPT, done["discord"])
    # and each invitation is posted once, every request after a 429 waiting as Discord asked
    requests = receiver.requests()
    posted = Counter(json.loads(r.body)["embeds"][0]["title"] for r in requests[STORM:])
    assert sorted(posted.values()) == [1] * DISCORD_EVENTS, "one successful post per delivery"
    assert sum(d.attempts for d in deliveries("discord", ids)) == len(requests), "each request is a recorded attempt"
    violations, latest_in_flight = rate_limit_violations(requests, STORM)
    assert violations == []
    print(
        f"\nDiscord storm of {STORM} × 429 (retry after {RETRY_AFTER:g} s): in-app done in {done['in_app']:.2f} s, "
        f"email in {done['email']:.2f} s, Discord in {done['discord']:.2f} s; {len(requests)} requests; the latest "
        f"request already in flight at a 429 arrived {latest_in_flight * 1000:.0f} ms after it"
    )


def test_the_rate_limit_check_catches_a_thread_that_does_not_wait() -> None:
    # given a 429 on connection 1, a request in flight on 3, then requests on 1 and 2 that did not wait
    def request(port: int, at: float) -> Received:
        return Received("POST", "/", {"X-Test-Client-Port": str(port)}, b"{}", at)

    requests = [request(1, 10.0), request(3, 10.05), request(1, 10.1), request(2, 10.7), request(1, 11.2)]
    # when
    violations, latest_in_flight = rate_limit_violations(requests, limited=1)
    # then
    assert violations == [
        "429 #0: the same thread called again after 0.100 s",
        "429 #0: another thread called after 0.700 s",
    ]
    assert latest_in_flight == pytest.approx(0.7)
