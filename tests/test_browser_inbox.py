"""The inbox bell and the preference centre in a real browser (headless Chromium), against the real worker,
RabbitMQ and web process: a product's page on another origin adds one script tag and one element."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest
from selenium import webdriver
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.select import Select

from dispatcher.api.auth import mint_user_token
from dispatcher.storage.models import Delivery, Event, InboxItem
from tests.support.browser import (
    accessibility_violations,
    in_page,
    keep_on_failure,
    save_screenshot,
    shadow,
    shadow_all,
    start_browser,
    wait_in_page,
)
from tests.support.deployment import USER_TOKEN_SECRET, Deployment
from tests.support.embedded import DevProcess
from tests.support.events import cloud_event
from tests.support.publishing import publish_event_as_tidings
from tests.support.services import free_port
from tests.support.smtp import SmtpServer
from tests.support.wait import wait_for
from tests.support.web import WebServer

pytestmark = pytest.mark.integration

DOCS_IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"
USER = "ana"
INBOX = "tidings-inbox"
#: The bell element, in a script run in the page.
THE_BELL = f"document.querySelector('{INBOX}')"
PREFERENCES = "tidings-preferences"


class HostPage:
    """The product's own site, on another origin: a page with the bell, the route a notification links to,
    and the product backend's token endpoint (it mints a short-lived user token for the signed-in user)."""

    def __init__(self, tidings: str) -> None:
        self.tidings = tidings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tokens_minted = 0
        self.expired_tokens = 0  # how many of the next tokens to mint already expired
        self.locale = "en"
        host = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.path == "/token":
                    host.tokens_minted += 1
                    ttl = 300
                    if host.expired_tokens:
                        host.expired_tokens -= 1
                        ttl = -600
                    self._send("text/plain", mint_user_token(USER_TOKEN_SECRET, USER, ttl=ttl))
                elif self.path.startswith("/matches/"):
                    self._send("text/html", "<!doctype html><html lang='en'><title>Match</title><h1>Match</h1></html>")
                else:
                    self._send("text/html", host.page())

            def _send(self, kind: str, text: str) -> None:
                body = text.encode()
                self.send_response(200)
                self.send_header("Content-Type", f"{kind}; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def page(self) -> str:
        return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Arena</title>
<script type="module" src="{self.tidings}/ui/tidings-inbox.js"></script>
<style>header {{ display: flex; justify-content: space-between; align-items: center; padding: 8px 16px;
  background: #101828; color: #fff; }} body {{ margin: 0; font-family: sans-serif; }}
  main {{ padding: 16px; min-height: 600px; }}</style></head>
<body><header><strong>Arena</strong>
<tidings-inbox api-base="{self.tidings}" locale="{self.locale}" style="--tidings-accent: #7c3aed"></tidings-inbox>
</header>
<main><h1>Tonight's matches</h1><p>Winter Cup, quarter-finals.</p></main>
<script type="module">
  document.querySelector("tidings-inbox").tokenProvider = async () => (await fetch("/token")).text();
</script>
</body></html>"""

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def browser(request: pytest.FixtureRequest) -> Iterator[webdriver.Chrome]:
    driver = start_browser()
    request.addfinalizer(driver.quit)
    request.addfinalizer(keep_on_failure(request, driver))  # runs first: the browser is still open
    yield driver


@pytest.fixture
def site(deployment: Deployment, smtp_server: SmtpServer) -> Iterator[tuple[HostPage, WebServer]]:
    """The worker and the web process (allowing the host page's origin), and the host page."""
    web_port = deployment.env["TIDINGS_HTTP_PORT"]
    host = HostPage(f"http://127.0.0.1:{web_port}")
    deployment.configure(TIDINGS_CORS_ORIGINS=host.url)
    deployment.worker().start()
    deployment.use_database()
    web = deployment.web().start()
    yield host, web
    web.stop()
    host.close()


def publish(deployment: Deployment, type_name: str, data: dict[str, Any]) -> str:
    """Publish an event with raw pika, as any producer does; its id."""
    event = cloud_event(type_name, data)
    connection = pika.BlockingConnection(pika.URLParameters(deployment.env["TIDINGS_BROKER_URL"]))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        body = json.dumps(event).encode()
        properties = pika.BasicProperties(content_type="application/cloudevents+json", delivery_mode=2)
        channel.basic_publish(deployment.exchange, type_name, body, properties, mandatory=True)
    finally:
        connection.close()
    return event["id"]


def invite(deployment: Deployment, team: str, **extra: Any) -> str:
    data = {"recipients": [USER], "team_name": team, "inviter_name": "Mira", **extra}
    return publish(deployment, "team.invite.sent", data)


def badge(driver: webdriver.Chrome) -> str:
    return str(shadow(driver, INBOX, ".badge").text)


def unread_per_api(web: WebServer) -> int:
    with web.client(mint_user_token(USER_TOKEN_SECRET, USER, ttl=60)) as client:
        return int(client.get("/v1/me/notifications/count").json()["unread"])


def open_bell(driver: webdriver.Chrome) -> None:
    bell = shadow(driver, INBOX, ".bell")
    if bell.get_attribute("aria-expanded") != "true":
        bell.click()
    wait_in_page(
        driver, f"return !document.querySelector('{INBOX}').shadowRoot.querySelector('.panel').hidden", what="the panel"
    )


def titles(driver: webdriver.Chrome) -> list[str]:
    return [str(e.text) for e in shadow_all(driver, INBOX, "li .title")]


def stream_open(driver: webdriver.Chrome) -> Any:
    return wait_in_page(driver, f"return {THE_BELL}.dataset.stream === 'open'", timeout=20, what="the stream")


def test_the_bell_shows_live_notifications_marks_them_read_follows_links_and_survives_a_restart(
    deployment: Deployment, site: tuple[HostPage, WebServer], browser: webdriver.Chrome
) -> None:
    host, web = site
    browser.get(host.url)
    stream_open(browser)
    assert badge(browser) == ""
    open_bell(browser)
    wait_in_page(
        browser,
        f"return document.querySelector('{INBOX}').shadowRoot.querySelector('.status').textContent.length > 0",
        what="the empty state",
    )

    # when an event is published with raw pika, it appears in the open panel without a reload, within 2 s
    published_at = time.monotonic()
    invite(deployment, "Night Owls", url=f"{host.url}/matches/42")
    wait_for(
        lambda: titles(browser) == ["Mira invited you to join Night Owls"],
        timeout=2,
        interval=0.02,
        what="the notification",
    )
    arrived_after = time.monotonic() - published_at
    wait_for(lambda: badge(browser) == "1", timeout=2, what="the badge")
    assert "unread" in (shadow(browser, INBOX, "li").get_attribute("class") or "")
    print(f"\nthe notification reached the open panel {arrived_after * 1000:.0f} ms after the publish")

    # the panel does not animate for a user who asked for reduced motion (the browser runs with that setting)
    motion = f"return getComputedStyle({THE_BELL}.shadowRoot.querySelector('.panel')).transitionDuration"
    assert in_page(browser, motion) == "0s"

    # and the page is accessible with the panel open (axe-core), then it is the documented screenshot
    assert accessibility_violations(browser) == []
    save_screenshot(browser, DOCS_IMAGES / "inbox-bell-open.png")

    # when it is clicked: marked read (the API says so), and its link followed
    shadow(browser, INBOX, "li .item").click()
    wait_for(lambda: browser.current_url == f"{host.url}/matches/42", what="the notification's link")
    assert unread_per_api(web) == 0

    # back on the page, the badge is down; three more arrive; "mark all as read" zeroes the badge
    browser.get(host.url)
    stream_open(browser)
    wait_for(lambda: in_page(browser, f"return {THE_BELL}.dataset.unread") == "0", what="the count read")
    assert badge(browser) == ""
    for team in ("Red Foxes", "Blue Jays", "Grey Wolves"):
        invite(deployment, team)
    wait_for(lambda: badge(browser) == "3", timeout=5, what="the badge at 3")
    open_bell(browser)
    wait_for(lambda: len(titles(browser)) == 4, what="four notifications")
    with web.client(mint_user_token(USER_TOKEN_SECRET, USER, ttl=60)) as client:
        newest_first = [item["title"] for item in client.get("/v1/me/notifications").json()["items"]]
    assert titles(browser) == newest_first
    shadow(browser, INBOX, ".mark-all").click()
    wait_for(lambda: badge(browser) == "", what="the badge zeroed")
    assert unread_per_api(web) == 0 and not shadow_all(browser, INBOX, "li.unread")

    # the keyboard: Escape closes the panel and gives the focus back to the bell
    shadow(browser, INBOX, "li .item").send_keys(Keys.ESCAPE)
    assert shadow(browser, INBOX, ".bell").get_attribute("aria-expanded") == "false"
    assert in_page(browser, f"return {THE_BELL}.shadowRoot.activeElement?.className") == "bell"
    # and from the page, Tab reaches the bell, Enter opens the panel on the newest notification
    browser.get(host.url)
    stream_open(browser)
    browser.find_element("css selector", "body").send_keys(Keys.TAB)
    assert in_page(browser, f"return {THE_BELL}.shadowRoot.activeElement?.className") == "bell"
    focus_ring = f"const s = getComputedStyle({THE_BELL}.shadowRoot.querySelector('.bell')); return s.outlineStyle"
    assert in_page(browser, focus_ring) == "solid", "the keyboard focus is visible"
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    wait_for(
        lambda: in_page(browser, f"return {THE_BELL}.shadowRoot.activeElement?.className") == "item",
        what="the focus on the newest notification",
    )
    browser.switch_to.active_element.send_keys(Keys.ESCAPE)
    assert shadow(browser, INBOX, ".bell").get_attribute("aria-expanded") == "false"

    # when the web process restarts, the stream reconnects by itself and a new notification arrives
    web.stop()
    wait_in_page(
        browser, f"return document.querySelector('{INBOX}').dataset.stream === 'reconnecting'", what="the drop"
    )
    web.start()
    stream_open(browser)
    invite(deployment, "Night Owls II")
    wait_for(lambda: badge(browser) == "1", timeout=5, what="the badge after the restart")
    assert host.tokens_minted >= 2  # the page's tokenProvider was asked, not a token in the markup


def test_email_switched_off_in_the_preference_centre_sends_no_email_but_keeps_the_in_app_row(
    deployment: Deployment, site: tuple[HostPage, WebServer], browser: webdriver.Chrome, smtp_server: SmtpServer
) -> None:
    _, web = site
    publish_event_as_tidings(deployment, "tidings.user.upsert", {"id": USER, "email": "ana@example.com"})
    wait_for(lambda: Event.select().where(Event.type == "tidings.user.upsert").exists(), what="the user")
    token = mint_user_token(USER_TOKEN_SECRET, USER, ttl=600)

    # given the preference centre, opened from a link that carries the token in its fragment
    browser.get(f"{web.url}/ui/preferences#token={token}")
    box = wait_for(lambda: _checkbox(browser, "team.invite.sent", "email"), what="the preference centre")
    assert "#token" not in browser.current_url, "the token is taken out of the address bar"
    assert box.is_selected()
    locked = shadow(browser, PREFERENCES, 'input[name="payout.received|email|enabled"]')
    assert locked.get_attribute("disabled") is not None
    assert "Always on" in str(shadow(browser, PREFERENCES, 'tr[data-type="payout.received"] th').text)
    assert accessibility_violations(browser) == []
    save_screenshot(browser, DOCS_IMAGES / "preference-centre.png")

    # when email is switched off for invitations, results go to the daily digest, and it is saved
    box.click()
    Select(shadow(browser, PREFERENCES, 'select[name="match.completed|email|mode"]')).select_by_value("digest")
    shadow(browser, PREFERENCES, "button.save").click()
    wait_for(lambda: shadow(browser, PREFERENCES, ".result").text == "Saved.", what="saved")
    with web.client(token) as client:
        shown = client.get("/v1/me/preferences").json()
    assert shown["types"]["team.invite.sent"]["channels"]["email"]["enabled"] is False
    assert shown["types"]["match.completed"]["channels"]["email"] == {
        "enabled": True,
        "mode": "digest",
        "locked": False,
    }

    # then an invitation reaches the inbox, and no email is sent
    event_id = invite(deployment, "Night Owls")
    wait_for(lambda: InboxItem.select().where(InboxItem.type == "team.invite.sent").count() == 1, what="the in-app row")
    event = Event.get(Event.event_id == event_id)
    assert [d.channel for d in Delivery.select().where(Delivery.event == event)] == ["in_app"]
    assert smtp_server.messages == []


def test_a_refused_value_is_shown_next_to_its_field(
    deployment: Deployment, site: tuple[HostPage, WebServer], browser: webdriver.Chrome
) -> None:
    _, web = site
    token = mint_user_token(USER_TOKEN_SECRET, USER, ttl=600)
    browser.get(f"{web.url}/ui/preferences?locale=fr#token={token}")
    zone = wait_for(lambda: _by_id(browser, "timezone"), what="the preference centre")
    assert shadow(browser, PREFERENCES, "button.save").text == "Enregistrer"

    # when a time zone that does not exist is saved
    zone.clear()
    zone.send_keys("Mars/Olympus_Mons")
    shadow(browser, PREFERENCES, "button.save").click()

    # then the API's reason is shown under the field, which is marked invalid
    error = wait_for(lambda: shadow(browser, PREFERENCES, "#timezone-error").text, what="the error")
    assert "Mars/Olympus_Mons" in error and "IANA" in error
    assert zone.get_attribute("aria-invalid") == "true"


def _checkbox(driver: webdriver.Chrome, type_name: str, channel: str) -> Any:
    found = shadow_all(driver, PREFERENCES, f'input[name="{type_name}|{channel}|enabled"]')
    return found[0] if found else None


def _by_id(driver: webdriver.Chrome, element_id: str) -> Any:
    found = shadow_all(driver, PREFERENCES, f"#{element_id}")
    return found[0] if found else None


def test_the_embedded_mode_start_page_hosts_the_bell_and_the_preference_centre(
    tmp_path: Path, browser: webdriver.Chrome
) -> None:
    with DevProcess(tmp_path / "dev", args=["--demo"]).start() as dev:
        wait_for(lambda: "Demo: 13 events published" in dev.log(), timeout=20, what="the demo")
        browser.get(f"{dev.url}/dev/")
        stream_open(browser)
        wait_for(lambda: badge(browser) not in ("", "0"), timeout=10, what="ana's unread count")
        open_bell(browser)
        wait_for(lambda: len(titles(browser)) >= 5, what="ana's notifications")
        wait_for(lambda: _checkbox(browser, "team.invite.sent", "email"), what="the preference centre")
        assert accessibility_violations(browser) == []


def test_the_panel_loads_older_notifications_as_it_is_scrolled(
    deployment: Deployment, site: tuple[HostPage, WebServer], browser: webdriver.Chrome
) -> None:
    # given 25 notifications, more than a page (20)
    host, _ = site
    for number in range(25):
        invite(deployment, f"Team {number:02}")
    wait_for(lambda: InboxItem.select().count() == 25, timeout=20, what="25 inbox rows")
    browser.get(host.url)
    open_bell(browser)
    wait_for(lambda: len(titles(browser)) == 20, what="the first page")

    # when the list is scrolled to its end
    in_page(browser, f"const list = {THE_BELL}.shadowRoot.querySelector('ul'); list.scrollTop = list.scrollHeight;")

    # then the next page is loaded, and nothing twice
    wait_for(lambda: len(titles(browser)) == 25, what="the second page")
    assert sorted(titles(browser)) == [f"Mira invited you to join Team {number:02}" for number in range(25)]
    assert badge(browser) == "25"

    # when the newest is archived: it leaves the panel and the counts, and the API has it archived
    newest = shadow(browser, INBOX, "li")
    item_id = int(newest.get_attribute("data-id") or 0)
    shadow(browser, INBOX, "li .archive").click()
    wait_for(lambda: len(titles(browser)) == 24 and badge(browser) == "24", what="the archived one gone")
    assert InboxItem.get_by_id(item_id).archived_at is not None


def test_an_expired_token_is_refreshed_through_the_provider_and_the_bell_speaks_french(
    deployment: Deployment, site: tuple[HostPage, WebServer], browser: webdriver.Chrome
) -> None:
    # given a page whose backend hands out an expired token first, in French
    host, _ = site
    host.expired_tokens, host.locale = 1, "fr"
    invite(deployment, "Night Owls")
    wait_for(lambda: InboxItem.select().count() == 1, what="the inbox row")

    # when the page opens
    browser.get(host.url)

    # then the refused token is replaced by a fresh one, and the bell says it in French
    wait_for(lambda: badge(browser) == "1", what="the count, with the refreshed token")
    assert host.tokens_minted >= 2
    assert shadow(browser, INBOX, ".bell").get_attribute("aria-label") == "Notifications, 1 non lue"
    open_bell(browser)
    wait_for(lambda: titles(browser) == ["Mira invited you to join Night Owls"], what="the notification")
    assert shadow(browser, INBOX, ".mark-all").text == "Tout marquer comme lu"
    assert shadow(browser, INBOX, "li time").text == "à l'instant"


def test_the_badge_relative_times_and_stream_parser_behave_in_the_browser(
    site: tuple[HostPage, WebServer], browser: webdriver.Chrome
) -> None:
    _, web = site
    browser.get(f"{web.url}/ui/preferences")
    result = browser.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        import("/ui/tidings-inbox.js").then(async (m) => {
          const now = Date.parse("2026-12-03T12:00:00Z");
          const events = [];
          const body = new Blob(["retry: 3000\\n\\n: ping\\n\\nid: 7\\nevent: count\\ndata: {\\"unread\\":2}\\n\\n",
                                 "id: 8\\nevent: notification\\ndata: {\\"id\\":8}\\n\\n"]).stream();
          await m.readEvents(body, (e) => events.push(e));
          done({
            badges: [0, 1, 99, 100, 12345].map(m.badgeText),
            en: ["2026-12-03T11:59:30Z", "2026-12-03T11:57:00Z", "2026-12-03T09:00:00Z", "2026-12-02T12:00:00Z"]
              .map((t) => m.relativeTime(t, "en", now)),
            fr: m.relativeTime("2026-12-03T11:57:00Z", "fr", now),
            events,
          });
        }, (error) => done({error: String(error)}));
        """
    )
    assert result == {
        "badges": ["", "1", "99", "99+", "99+"],
        "en": ["just now", "3 minutes ago", "3 hours ago", "yesterday"],
        "fr": "il y a 3 minutes",
        "events": [
            {"id": "7", "event": "count", "data": '{"unread":2}'},
            {"id": "8", "event": "notification", "data": '{"id":8}'},
        ],
    }
