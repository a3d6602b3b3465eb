"""Calling the API in tests: token clients, and every answer checked against the schema."""

import json
import re
from functools import cache

import jsonschema
from django.contrib.auth.models import User
from django.http import HttpResponse
from django.test import Client
from ninja.responses import NinjaJSONEncoder

from imagereview.actions.tokens import issue_token

ALL_SCOPES = ("read", "request", "review", "publish")


def token_client(user: User, *scopes: str) -> Client:
    """A client that sends a fresh personal token of `user` with `scopes` (default: all)."""
    _, text = issue_token(user=user, name="test", scopes=scopes or ALL_SCOPES)
    return Client(HTTP_AUTHORIZATION=f"Bearer {text}")


@cache
def openapi() -> dict:
    from imagereview.api import api

    return json.loads(json.dumps(api.get_openapi_schema(), cls=NinjaJSONEncoder))


def _operation(method: str, path: str) -> dict:
    for template, operations in openapi()["paths"].items():
        pattern = re.sub(r"\{[^}]+\}", "[^/]+", template)
        if re.fullmatch(pattern, path) and method.lower() in operations:
            return operations[method.lower()]
    raise AssertionError(f"{method} {path} is not in the published schema")


def conforms(response: HttpResponse) -> HttpResponse:
    """Assert that the response is what the schema publishes for its operation and status."""
    request = response.request
    method, path = request["REQUEST_METHOD"], request["PATH_INFO"]
    responses = _operation(method, path)["responses"]
    status = str(response.status_code)
    assert status in responses, f"{method} {path} answered {status}, not in the schema"
    content = responses[status].get("content", {})
    media_type = response["Content-Type"].split(";")[0]
    if response.status_code >= 400:
        assert media_type == "application/problem+json"
    if media_type not in content:
        assert not media_type.endswith("json"), f"{media_type} is not published for {status}"
        return response
    schema = {**content[media_type]["schema"], "components": openapi()["components"]}
    jsonschema.validate(response.json(), schema, cls=jsonschema.Draft202012Validator)
    return response
