"""A schema-driven fuzz run of the whole API: no server error, every answer as published.

Schemathesis generates calls of every operation from the published schema, valid and not,
and checks each answer against it (status, content type, body, headers).
"""

import os

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance

from imagereview.actions.tokens import issue_token
from tests.api_support import ALL_SCOPES
from tests.factories import request_in_review

EXAMPLES_PER_OPERATION = int(os.environ.get("FUZZ_EXAMPLES", "30"))
# Schema-valid data the forms may still refuse, by rules across fields or in files that a JSON
# schema cannot state (a quota over the variants, a blank prompt, a file that is no image);
# every other check runs, refusals of invalid data included.
RULES_BEYOND_THE_SCHEMA = [positive_data_acceptance]


@pytest.fixture
def api_schema(db):
    """The published schema, called in this process through the WSGI application."""
    # As Django's test client does: the test's transaction outlives each request.
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    yield schemathesis.openapi.from_wsgi("/api/v1/openapi.json", get_wsgi_application())
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


@pytest.fixture
def caller(reviewer, requester, settings) -> dict[str, str]:
    """A reviewer's token with every scope, and something to find: ids 1 exist."""
    settings.API_RATE_LIMIT = 1_000_000
    # Generated reference URLs are refused by host, before any lookup or fetch.
    settings.API_REFERENCE_URL_HOSTS = ["references.invalid"]
    request_in_review(requester, variants=1, real_images=False)
    _, text = issue_token(user=reviewer, name="fuzz", scopes=ALL_SCOPES)
    return {"Authorization": f"Bearer {text}"}


def test_the_api_answers_as_its_schema_says(api_schema, caller):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def answers_as_published(case) -> None:
            case.call_and_validate(headers=caller, excluded_checks=RULES_BEYOND_THE_SCHEMA)

        answers_as_published()
