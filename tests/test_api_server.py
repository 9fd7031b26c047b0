"""The web process, started from the Procfile's web line: probes, the OpenAPI document, errors as problem+json."""

from __future__ import annotations

import httpx
import pytest

from tests.support.deployment import Deployment
from tests.support.services import free_port

pytestmark = pytest.mark.integration


def test_the_web_process_answers_its_probes_and_serves_its_openapi_document(deployment: Deployment) -> None:
    # given the web process started as the Procfile starts it
    with deployment.web().start() as web, web.client() as client:
        # when / then
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").json() == {"database": "ok", "broker": "ok", "channels_off": []}
        document = client.get("/openapi.json").json()
        assert document["openapi"].startswith("3.1")
        assert "/readyz" in document["paths"]


def test_readyz_names_the_channels_switched_off(deployment: Deployment) -> None:
    # given a web process whose TIDINGS_CHANNELS leaves Discord and webhooks out
    with deployment.web(TIDINGS_CHANNELS="in_app,email").start() as web, web.client() as client:
        # when
        response = client.get("/readyz")
    # then: still ready, and it says which are off
    assert (response.status_code, response.json()["channels_off"]) == (200, ["discord", "webhook"])


def test_readyz_says_503_and_names_the_broker_when_rabbitmq_is_unreachable(deployment: Deployment) -> None:
    # given a web process whose broker URL points at a port nothing listens on
    unreachable = f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F"
    with deployment.web(TIDINGS_BROKER_URL=unreachable).start() as web, web.client() as client:
        # when
        response = client.get("/readyz")
    # then
    assert response.status_code == 503
    assert response.json()["database"] == "ok"
    assert response.json()["broker"].startswith("unreachable")


def test_readyz_says_503_and_names_the_database_when_it_is_unreachable(deployment: Deployment) -> None:
    # given a web process whose database is a PostgreSQL server nothing runs
    unreachable = f"postgresql://postgres@127.0.0.1:{free_port()}/tidings"
    with deployment.web(TIDINGS_DATABASE_URL=unreachable).start() as web, web.client() as client:
        # when
        response = client.get("/readyz")
        alive = client.get("/healthz")
    # then
    assert response.status_code == 503
    assert response.json()["database"].startswith("unreachable")
    assert response.json()["broker"] == "ok"
    assert alive.status_code == 200


def test_an_unknown_path_is_a_problem_json_404(deployment: Deployment) -> None:
    with deployment.web().start() as web, web.client() as client:
        response = client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 404


def test_a_body_over_the_limit_is_a_413_before_any_route_reads_it(deployment: Deployment) -> None:
    with deployment.web(TIDINGS_HTTP_MAX_BODY_BYTES="1000").start() as web, web.client() as client:
        response = client.post("/healthz", content=b"x" * 5000)
    assert response.status_code == 413
    assert response.json()["title"] == "Content Too Large"


def test_a_caller_over_the_rate_limit_gets_429_with_retry_after(deployment: Deployment) -> None:
    with deployment.web(TIDINGS_HTTP_RATE_LIMIT="5").start() as web, web.client(token="some-token") as client:
        statuses = [client.get("/v1/nothing-here").status_code for _ in range(6)]
        limited = client.get("/v1/nothing-here")
        with httpx.Client(base_url=web.url, headers={"Authorization": "Bearer another"}) as other:
            unaffected = other.get("/v1/nothing-here")
    assert statuses[:5] == [404] * 5
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    assert unaffected.status_code == 404
