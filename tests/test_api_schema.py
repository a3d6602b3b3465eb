"""The published OpenAPI schema and the interactive docs, served offline."""

import re

import pytest
from django.contrib.staticfiles import finders
from django.test import Client

from tests.api_support import openapi

pytestmark = pytest.mark.django_db

ENDPOINTS = {
    ("get", "/api/v1/me"),
    ("post", "/api/v1/requests"),
    ("get", "/api/v1/requests"),
    ("get", "/api/v1/requests/{request_id}"),
    ("get", "/api/v1/outputs/{asset_id}/file"),
    ("get", "/api/v1/outputs/{asset_id}/thumbnail"),
    ("post", "/api/v1/outputs/{output_id}/decision"),
    ("post", "/api/v1/outputs/{output_id}/changes"),
    ("post", "/api/v1/outputs/{output_id}/publish"),
    ("get", "/api/v1/outputs"),
}


def test_the_schema_is_served_and_lists_every_endpoint(db):
    response = Client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["version"] == "1"
    published = {(m, path) for path, ops in schema["paths"].items() for m in ops}
    assert published >= ENDPOINTS
    assert schema == openapi()
    ids = [
        operation["operationId"] for ops in schema["paths"].values() for operation in ops.values()
    ]
    assert len(ids) == len(set(ids))
    assert "create_request" in ids


def test_every_operation_needs_authentication_and_documents_its_problems():
    for path, operations in openapi()["paths"].items():
        for method, operation in operations.items():
            assert operation["security"] == [{"PersonalToken": []}, {"Session": []}], path
            for status in ("401", "429"):
                content = operation["responses"][status]["content"]
                assert list(content) == ["application/problem+json"], (method, path)


def test_the_create_documents_json_and_multipart_bodies():
    operation = openapi()["paths"]["/api/v1/requests"]["post"]
    content = operation["requestBody"]["content"]
    assert set(content) == {"application/json", "multipart/form-data"}
    assert "reference_urls" in content["application/json"]["schema"]["properties"]
    assert "references" in content["multipart/form-data"]["schema"]["properties"]
    assert operation["parameters"][0]["name"] == "Idempotency-Key"


def test_the_docs_page_loads_with_no_external_url(db):
    response = Client().get("/api/v1/docs")
    assert response.status_code == 200
    page = response.content.decode()
    assert "swagger-ui-bundle.js" in page
    assert '"validatorUrl": null' in page  # no badge fetched from an outside validator
    assert not re.search(r"https?://", page)
    for asset in re.findall(r'(?:src|href)="/static/([^"]+)"', page):
        assert finders.find(asset), f"{asset} is not among the static files"
