"""What the web process serves under /ui/ (the inbox and preference elements, the preference page) and the
links that lead there. Their behaviour in a browser is tests/test_browser_inbox.py's."""

from __future__ import annotations

import re
import urllib.parse

import pytest
from fastapi.testclient import TestClient

from dispatcher.api.app import create_app
from dispatcher.api.auth import mint_user_token, verify_user_token
from dispatcher.api.ui import SCRIPTS
from dispatcher.core.catalog import Catalog
from dispatcher.core.settings import Settings
from dispatcher.core.unsubscribe import make_token

SECRET = "unsubscribe-secret-key-0123456789abcdef"
USER_SECRET = "user-token-secret-0123456789abcdef0123"


@pytest.fixture
def client(sqlite_db: str, catalog: Catalog) -> TestClient:
    settings = Settings(database_url=sqlite_db, secret_key=SECRET, user_token_secret=USER_SECRET)
    return TestClient(create_app(settings, catalog))


@pytest.mark.parametrize("name", SCRIPTS)
def test_each_script_is_served_as_a_javascript_module_with_an_etag_and_a_304_when_unchanged(
    client: TestClient, name: str
) -> None:
    # when
    first = client.get(f"/ui/{name}")
    again = client.get(f"/ui/{name}", headers={"If-None-Match": first.headers["etag"]})

    # then
    assert first.status_code == 200
    assert first.headers["content-type"] == "text/javascript; charset=utf-8"
    assert first.headers["x-content-type-options"] == "nosniff"
    assert first.headers["access-control-allow-origin"] == "*"
    assert "customElements" in first.text or "import" in first.text
    assert (again.status_code, again.content) == (304, b"")


def test_the_elements_define_themselves_once_and_use_no_inline_style(client: TestClient) -> None:
    for name, element in (("tidings-inbox.js", "tidings-inbox"), ("tidings-preferences.js", "tidings-preferences")):
        source = client.get(f"/ui/{name}").text
        assert f'customElements.define("{element}"' in source
        assert 'import { TidingsElement } from "./tidings-element.js";' in source
        assert "<style" not in source and "style=" not in source
    # their shared base styles them with a constructed sheet: a host page's CSP needs no 'unsafe-inline'
    assert "adoptedStyleSheets = [sheet]" in client.get("/ui/tidings-element.js").text


def test_an_unknown_script_is_a_404(client: TestClient) -> None:
    response = client.get("/ui/other.js")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_the_preference_page_loads_only_its_own_scripts_and_keeps_out_of_frames_and_caches(client: TestClient) -> None:
    # when
    response = client.get("/ui/preferences")

    # then
    assert response.status_code == 200
    assert '<script type="module" src="/ui/preferences-page.js"></script>' in response.text
    assert "<tidings-preferences></tidings-preferences>" in response.text
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert (response.headers["cache-control"], response.headers["referrer-policy"]) == ("no-store", "no-referrer")


def test_the_unsubscribe_page_links_to_the_preference_centre_signed_in_as_the_links_user(
    client: TestClient,
) -> None:
    # when
    page = client.get(f"/unsubscribe/{make_token(SECRET, 'ana', 'team.invite.sent', ttl=3600)}")

    # then: a link whose fragment carries a short-lived token for ana
    [href] = re.findall(
        r'<a href="(/ui/preferences#token=[^"]+)">Manage all your notification preferences</a>', page.text
    )
    token = urllib.parse.unquote(href.split("#token=", 1)[1])
    assert verify_user_token(USER_SECRET, token, max_ttl=15 * 60) == "ana"


def test_without_user_tokens_the_unsubscribe_page_has_no_preference_link(sqlite_db: str, catalog: Catalog) -> None:
    client = TestClient(create_app(Settings(database_url=sqlite_db, secret_key=SECRET), catalog))
    page = client.get(f"/unsubscribe/{make_token(SECRET, 'ana', 'team.invite.sent', ttl=3600)}")
    assert page.status_code == 200 and "/ui/preferences" not in page.text


def test_the_preferences_say_what_each_type_is_about(client: TestClient, catalog: Catalog) -> None:
    token = mint_user_token(USER_SECRET, "ana", ttl=60)
    shown = client.get("/v1/me/preferences", headers={"Authorization": f"Bearer {token}"}).json()
    assert shown["types"]["team.invite.sent"]["description"] == catalog.types["team.invite.sent"].description
    # and the document can be sent back as it is
    sent_back = client.put("/v1/me/preferences", json=shown, headers={"Authorization": f"Bearer {token}"})
    assert sent_back.status_code == 200, sent_back.text
