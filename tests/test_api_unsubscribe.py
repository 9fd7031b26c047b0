"""One-click unsubscribe: the page a link shows, the POST that turns email off, and what a bad link gets.

The app runs in this process (TestClient) on a SQLite database; the last test runs it all for real:
a worker sends the email to an SMTP server, and the link in its raw bytes is followed on the web process.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import re
import urllib.parse

import pytest
from fastapi.testclient import TestClient

from channels import channel_names
from dispatcher.api.app import create_app
from dispatcher.core import clock
from dispatcher.core.catalog import Catalog, NotificationType
from dispatcher.core.settings import Settings
from dispatcher.core.unsubscribe import make_token
from dispatcher.storage.db import database
from dispatcher.storage.models import Event, Preference, User
from tests.support.deployment import Deployment
from tests.support.events import invite
from tests.support.publishing import publish_event
from tests.support.smtp import SmtpServer
from tests.support.wait import wait_for

SECRET = "unsubscribe-secret-key-0123456789abcdef"
TTL = 30 * 24 * 3600.0
TYPE = "team.invite.sent"  # not critical, emailed by default
CRITICAL = "payment.verified"
ONE_CLICK = {"List-Unsubscribe": "One-Click"}
FORM = "application/x-www-form-urlencoded"
#: The channels a link turns off, as the registry states them (the test spells no channel).
LINK_CHANNELS = channel_names(unsubscribe_link=True)


@pytest.fixture
def client(sqlite_db: str, catalog: Catalog) -> TestClient:
    return TestClient(create_app(Settings(database_url=sqlite_db, secret_key=SECRET), catalog))


def path(user: str = "ana", type_name: str = TYPE, *, secret: str = SECRET, ttl: float = TTL) -> str:
    return f"/unsubscribe/{make_token(secret, user, type_name, ttl=ttl)}"


def preferences() -> set[tuple[str, str, str, bool, str]]:
    with database.connection_context():
        return {(p.user_id, p.type, p.channel, p.enabled, p.mode) for p in Preference.select()}


def commands() -> int:
    with database.connection_context():
        return Event.select().where(Event.type == "tidings.preferences.set").count()


def _ana_is_known() -> bool:
    with database.connection_context():
        return bool(User.select().where(User.id == "ana").exists())


def style_hashes(html: str) -> set[str]:
    return {
        f"'sha256-{base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()}'"
        for style in re.findall(r"<style>(.*?)</style>", html, flags=re.DOTALL)
    }


# --- the page a link shows -----------------------------------------------------------------------------------------


def test_the_page_names_the_type_and_its_description_and_changes_nothing(client: TestClient, catalog: Catalog) -> None:
    # when
    response = client.get(path())
    # then
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert TYPE in response.text
    assert catalog.types[TYPE].description in response.text
    assert preferences() == set() and commands() == 0


def test_the_pages_button_posts_the_one_click_form_to_the_same_url(client: TestClient) -> None:
    # when
    html = client.get(path()).text
    # then: a form with no action posts to the page's own URL
    [form] = re.findall(r"<form[^>]*>.*?</form>", html, flags=re.DOTALL)
    assert 'method="post"' in form and "action=" not in form
    assert '<input type="hidden" name="List-Unsubscribe" value="One-Click">' in form
    assert "<button" in form


def test_the_page_is_sent_with_headers_that_keep_the_token_private_and_the_page_unframed(client: TestClient) -> None:
    # when
    for response in (client.get(path()), client.get("/unsubscribe/forged.token"), client.post(path(), data=ONE_CLICK)):
        # then
        headers = response.headers
        policy = dict(part.strip().split(" ", 1) for part in headers["content-security-policy"].split(";"))
        assert policy["default-src"] == "'none'"
        assert policy["form-action"] == "'self'"
        assert policy["frame-ancestors"] == "'none'"
        assert set(policy["style-src"].split()) == style_hashes(response.text) != set()
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["cache-control"] == "no-store"
        assert headers["x-content-type-options"] == "nosniff"


def test_the_page_loads_nothing_from_elsewhere(client: TestClient) -> None:
    html = client.get(path()).text
    assert not re.search(r"<(script|img|link|iframe)\b", html)
    assert "http://" not in html and "https://" not in html


def test_a_description_with_markup_is_escaped_on_the_page(sqlite_db: str, catalog: Catalog) -> None:
    # given a catalog whose type description holds markup
    crafted = dataclasses.replace(catalog.types[TYPE], description='<script>alert(1)</script><b onclick="x">')
    app = create_app(
        Settings(database_url=sqlite_db, secret_key=SECRET), dataclasses.replace(catalog, types={TYPE: crafted})
    )
    # when
    html = TestClient(app).get(path()).text
    # then
    assert "<script>" not in html and "<b " not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;b onclick=&#34;x&#34;&gt;" in html


def test_a_type_name_with_markup_is_escaped_on_the_page(sqlite_db: str, catalog: Catalog) -> None:
    # given a (signed) token for a type whose name holds markup, as a future catalog might have it
    name = "<img src=x onerror=alert(1)>"
    kind = NotificationType(name=name, description="d", channels=frozenset(LINK_CHANNELS))
    app = create_app(
        Settings(database_url=sqlite_db, secret_key=SECRET), dataclasses.replace(catalog, types={name: kind})
    )
    # when
    html = TestClient(app).get(f"/unsubscribe/{make_token(SECRET, 'ana', name, ttl=TTL)}").text
    # then
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


# --- the one-click POST -------------------------------------------------------------------------------------------


def test_a_one_click_post_turns_email_off_for_that_user_and_type_only(client: TestClient) -> None:
    # when
    response = client.post(path(), data=ONE_CLICK)
    # then
    assert response.status_code == 200
    assert "You are unsubscribed" in response.text and TYPE in response.text
    assert preferences() == {("ana", TYPE, name, False, None) for name in LINK_CHANNELS}  # no mode chosen
    with database.connection_context():
        [event] = Event.select().where(Event.type == "tidings.preferences.set")
    assert event.source == "/tidings/unsubscribe"
    assert event.data == {
        "user": "ana",
        "preferences": [{"type": TYPE, "channel": name, "enabled": False} for name in LINK_CHANNELS],
    }


def test_a_second_post_is_harmless(client: TestClient) -> None:
    # given
    link = path()
    client.post(link, data=ONE_CLICK)
    # when
    response = client.post(link, data=ONE_CLICK)
    # then
    assert response.status_code == 200
    assert preferences() == {("ana", TYPE, name, False, None) for name in LINK_CHANNELS}  # no mode chosen


def test_the_pages_button_without_a_body_unsubscribes_too(client: TestClient) -> None:
    assert client.post(path()).status_code == 200
    assert preferences() == {("ana", TYPE, name, False, None) for name in LINK_CHANNELS}  # no mode chosen


def test_unsubscribing_keeps_a_digest_mode_for_when_email_is_turned_back_on(client: TestClient) -> None:
    # given ana chose the digest for invites
    with database.connection_context():
        for name in LINK_CHANNELS:
            Preference.create(
                user_id="ana", type=TYPE, channel=name, enabled=True, mode="digest", changed_at=clock.now()
            )
    # when
    client.post(path(), data=ONE_CLICK)
    # then
    assert preferences() == {("ana", TYPE, name, False, "digest") for name in LINK_CHANNELS}


def test_a_click_overrides_a_preference_stamped_later_than_now(client: TestClient) -> None:
    # given a preference a product set with a time ahead of ours (clock skew)
    later = clock.now() + dt.timedelta(minutes=4)
    with database.connection_context():
        for name in LINK_CHANNELS:
            Preference.create(user_id="ana", type=TYPE, channel=name, enabled=True, mode="immediate", changed_at=later)
    # when
    client.post(path(), data=ONE_CLICK)
    # then: the user's click is their newest word
    assert {enabled for *_, enabled, _ in preferences()} == {False}


def test_a_critical_type_cannot_be_turned_off_and_the_page_says_so(client: TestClient) -> None:
    # when
    page = client.get(path(type_name=CRITICAL))
    posted = client.post(path(type_name=CRITICAL), data=ONE_CLICK)
    # then
    assert page.status_code == 200 and "cannot be turned off" in page.text and "<form" not in page.text
    assert posted.status_code == 409 and "cannot be turned off" in posted.text
    assert preferences() == set() and commands() == 0


def test_a_type_no_longer_in_the_catalog_is_a_410_page_that_changes_nothing(client: TestClient) -> None:
    response = client.post(path(type_name="team.gone"), data=ONE_CLICK)
    assert response.status_code == 410 and "no longer" in response.text
    assert preferences() == set() and commands() == 0


# --- links that are not valid -------------------------------------------------------------------------------------


def altered(link: str) -> str:
    """The link with its payload's first character changed: the signature no longer matches."""
    token = link.rsplit("/", 1)[1]
    return f"/unsubscribe/{'B' if token[0] != 'B' else 'C'}{token[1:]}"


@pytest.mark.parametrize(
    "link",
    [
        pytest.param(path(secret="another-secret-key-0123456789abcdefgh"), id="signed-with-another-key"),
        pytest.param(altered(path()), id="altered"),
        pytest.param(path(ttl=-1), id="expired"),
        pytest.param("/unsubscribe/not-a-token", id="malformed"),
        pytest.param("/unsubscribe/" + urllib.parse.quote("ü.ß"), id="not-ascii"),
        pytest.param("/unsubscribe/" + "a" * 5000, id="too-long"),
    ],
)
def test_a_link_that_is_not_valid_is_a_400_page_that_changes_nothing(client: TestClient, link: str) -> None:
    for response in (client.get(link), client.post(link, data=ONE_CLICK)):
        assert response.status_code == 400
        assert response.headers["content-type"].startswith("text/html")
        assert "This link is not valid" in response.text and "<form" not in response.text
    assert preferences() == set() and commands() == 0


def test_without_a_secret_key_every_link_is_a_400_page(sqlite_db: str, catalog: Catalog) -> None:
    app = TestClient(create_app(Settings(database_url=sqlite_db), catalog))
    assert app.post(path(), data=ONE_CLICK).status_code == 400
    assert preferences() == set()


def test_the_openapi_document_lists_both_operations(client: TestClient) -> None:
    operations = client.get("/openapi.json").json()["paths"]["/unsubscribe/{token}"]
    assert set(operations) == {"get", "post"}
    assert "application/x-www-form-urlencoded" in operations["post"]["requestBody"]["content"]


# --- end to end: the raw email's header, the page, the POST, the preference row ------------------------------------


@pytest.mark.integration
def test_the_link_in_a_sent_emails_raw_header_unsubscribes_its_user_from_that_type(
    deployment: Deployment, smtp_server: SmtpServer
) -> None:
    # given a worker and a web process whose public URL is the web process itself
    public_url = f"http://127.0.0.1:{deployment.env['TIDINGS_HTTP_PORT']}"
    deployment.configure(TIDINGS_PUBLIC_URL=public_url, TIDINGS_SECRET_KEY=SECRET)
    deployment.worker().start()
    deployment.use_database()
    publish_event(deployment, "tidings.user.upsert", {"id": "ana", "email": "ana@example.com"}, user_id="guest")
    wait_for(_ana_is_known, what="ana to be upserted")
    with deployment.web().start() as web, web.client() as http:
        # when an invite is emailed to ana
        publish_event(deployment, TYPE, invite(["ana"]))
        raw = wait_for(lambda: smtp_server.raw_messages, what="the email")[0]
        # then its raw bytes carry the link verbatim, on one line
        headers = raw.split(b"\r\n\r\n", 1)[0]
        assert b"=?utf-8?" not in headers.lower().split(b"list-unsubscribe", 1)[1].split(b"\r\n", 1)[0]
        match = re.search(rb"^List-Unsubscribe: <(http://[^>\r\n]+)>\r\n(?![ \t])", headers, flags=re.MULTILINE)
        assert match, headers.decode(errors="replace")
        assert re.search(rb"^List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n", headers, flags=re.MULTILINE)
        link = match.group(1).decode()
        assert link.startswith(f"{public_url}/unsubscribe/")

        # when a scanner or the user opens it
        page = http.get(link)
        # then the page names the type and nothing changed
        assert page.status_code == 200 and TYPE in page.text
        assert preferences() == set()

        # when the mail client POSTs the one-click form (RFC 8058)
        posted = http.post(link, content=b"List-Unsubscribe=One-Click", headers={"Content-Type": FORM})
        # then email is off for ana and invites, and a second POST is harmless
        assert posted.status_code == 200
        assert preferences() == {("ana", TYPE, name, False, None) for name in LINK_CHANNELS}  # no mode chosen
        again = http.post(link, content=b"List-Unsubscribe=One-Click", headers={"Content-Type": FORM})
        assert again.status_code == 200
        assert preferences() == {("ana", TYPE, name, False, None) for name in LINK_CHANNELS}  # no mode chosen

        # and a forged link changes nothing
        forged = http.post(altered(urllib.parse.urlsplit(link).path), data=ONE_CLICK)
        assert forged.status_code == 400 and commands() == 2
    assert "/unsubscribe/" + link.rsplit("/", 1)[1] not in web.log(), "the token reached the web log"
