"""The OpenAPI document: docs/openapi.json is what the app serves, and every error is described as problem+json."""

from __future__ import annotations

import json

from dispatcher.api.openapi import openapi_text
from dispatcher.core.catalog import Catalog
from dispatcher.core.settings import PROJECT_ROOT, Settings

DOCUMENT = PROJECT_ROOT / "docs" / "openapi.json"


def test_docs_openapi_json_is_the_document_the_app_serves(catalog: Catalog) -> None:
    expected = openapi_text(Settings(), catalog)
    assert DOCUMENT.read_text() == expected, "docs/openapi.json is stale: run `tidings openapi > docs/openapi.json`"


def test_every_operation_describes_its_errors_as_problem_json(catalog: Catalog) -> None:
    document = json.loads(openapi_text(Settings(), catalog))
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status in ("401", "404", "422", "429"):
                content = operation["responses"][status]["content"]
                assert list(content) == ["application/problem+json"], f"{method.upper()} {path} {status}"
    assert "HTTPValidationError" not in document["components"]["schemas"]
