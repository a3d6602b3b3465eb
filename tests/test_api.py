"""The JSON API's endpoints: happy paths, permissions, and the forms' validation."""

import hashlib
import io
import json

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from PIL import Image

from imagereview.actions.tokens import revoke_token
from imagereview.forms import GenerationRequestForm
from imagereview.models import ApiToken, Asset, Decision, ImageRequest, Publication
from imagereview.roles import REQUESTERS, REVIEWERS
from tests.api_support import conforms, token_client
from tests.conftest import client_for, make_user
from tests.factories import publication_of, request_in_review

pytestmark = pytest.mark.django_db

JSON = "application/json"


def post(client: Client, path: str, body: object, **headers: str):
    return client.post(path, json.dumps(body), content_type=JSON, **headers)


def problem_type(response) -> str:
    return response.json()["type"].rsplit("/", 1)[-1]


@pytest.fixture
def other_requester(db):
    return make_user("bob", REQUESTERS)


# --- /me


def test_me_describes_the_caller_and_their_limits(requester, settings):
    settings.API_RATE_LIMIT = 77
    response = conforms(token_client(requester, "read", "request").get("/api/v1/me"))
    assert response.status_code == 200
    body = response.json()
    assert body["username"] == "alice"
    assert body["is_reviewer"] is False
    assert body["scopes"] == ["read", "request"]
    assert body["limits"]["rate_per_minute"] == 77
    assert body["limits"]["max_variants"] == 4


def test_me_answers_a_token_of_any_scope(reviewer):
    response = token_client(reviewer, "publish").get("/api/v1/me")
    assert response.status_code == 200
    assert response.json()["is_reviewer"] is True


def test_me_answers_the_session_with_every_scope(requester):
    response = client_for(requester).get("/api/v1/me")
    assert response.json()["scopes"] == ["read", "request", "review", "publish"]


def test_me_refuses_anonymous_callers(db):
    response = conforms(Client().get("/api/v1/me"))
    assert response.status_code == 401
    assert problem_type(response) == "not-authenticated"
    assert response["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "header",
    ["Bearer ir_nosuch_secret", "Bearer not-a-token", "Bearer ir_"],
)
def test_me_refuses_a_wrong_token(requester, header):
    response = conforms(Client(HTTP_AUTHORIZATION=header).get("/api/v1/me"))
    assert response.status_code == 401
    assert problem_type(response) == "not-authenticated"


def test_me_refuses_a_token_with_a_wrong_secret(requester):
    client = token_client(requester)
    header = client.defaults["HTTP_AUTHORIZATION"]
    client.defaults["HTTP_AUTHORIZATION"] = header[:-4] + "AAAA"
    assert client.get("/api/v1/me").status_code == 401


def test_me_refuses_a_revoked_token_at_once(requester):
    client = token_client(requester)
    assert client.get("/api/v1/me").status_code == 200
    revoke_token(token_id=ApiToken.objects.get().pk)
    response = client.get("/api/v1/me")
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]


# --- creating requests


def test_create_makes_a_generation_with_the_forms_defaults(
    requester, enqueued, django_capture_on_commit_callbacks
):
    client = token_client(requester, "request")
    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, "/api/v1/requests", {"prompt": "a fox"})
    conforms(response)
    assert response.status_code == 201
    image_request = ImageRequest.objects.get()
    assert response.json()["id"] == image_request.pk
    assert (image_request.requester, image_request.prompt) == (requester, "a fox")
    assert (image_request.aspect_ratio, image_request.resolution) == ("1:1", "1K")
    assert image_request.auto_publish is None
    # Due at once for the dispatcher, which paces creates; nothing is sent from the web.
    assert enqueued == []
    [generation] = image_request.generations.all()
    assert generation.next_attempt_at <= timezone.now()
    assert response.json()["generations"][0]["state"] == "queued"


def test_create_takes_every_parameter(requester):
    body = {
        "prompt": "a fox",
        "aspect_ratio": "16:9",
        "resolution": "2K",
        "output_format": "jpg",
        "variants": 3,
        "required_approvals": 2,
        "approval_quota": 2,
        "auto_reject": True,
        "auto_publish": False,
    }
    response = post(token_client(requester, "request"), "/api/v1/requests", body)
    assert response.status_code == 201
    image_request = ImageRequest.objects.get()
    assert image_request.variants == 3
    assert (image_request.required_approvals, image_request.approval_quota) == (2, 2)
    assert image_request.auto_publish is False
    assert image_request.acceptance_rules["auto_reject"] == ["format", "aspect_ratio", "resolution"]
    assert image_request.generations.count() == 3


def test_create_needs_the_request_scope(requester):
    response = post(token_client(requester, "read"), "/api/v1/requests", {"prompt": "a fox"})
    assert conforms(response).status_code == 403
    assert problem_type(response) == "forbidden"
    assert "'request' scope" in response.json()["detail"]
    assert not ImageRequest.objects.exists()


def test_create_refuses_anonymous_callers(db):
    response = post(Client(), "/api/v1/requests", {"prompt": "a fox"})
    assert response.status_code == 401
    assert not ImageRequest.objects.exists()


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"prompt": ""}, "prompt", "Enter a prompt"),
        ({"prompt": "x" * 10001}, "prompt", "too long"),
        ({"prompt": "a", "variants": 9}, "variants", "between 1 and 4"),
        ({"prompt": "a", "aspect_ratio": "7:5"}, "aspect_ratio", "not a valid aspect ratio"),
        ({"prompt": "a", "resolution": "8K"}, "resolution", "not a valid resolution"),
        ({"prompt": "a", "output_format": "gif"}, "output_format", "not a valid output format"),
        ({"prompt": "a", "variants": 1, "approval_quota": 2}, "approval_quota", "at most 1"),
        ({"prompt": "a", "required_approvals": 6}, "required_approvals", "between 1 and 5"),
        ({"prompt": "a", "auto_publish": "maybe"}, "auto_publish", "Choose yes, no"),
        ({"prompt": "a", "colour": "red"}, "colour", "Unknown field"),
        ({"prompt": "a", "mode": "paint"}, "mode", "generate"),
        ({"prompt": ["a"]}, "prompt", "single value"),
        ({"prompt": "a", "reference_urls": ["https://x.test/a.png"]}, "mode", "no references"),
        ({"prompt": "a", "mode": "edit"}, "references", "at least one reference"),
        ({"prompt": "a", "reference_urls": "https://x"}, "reference_urls", "list"),
    ],
)
def test_create_reports_each_invalid_field(requester, body, field, words):
    response = post(token_client(requester), "/api/v1/requests", body)
    conforms(response)
    assert response.status_code == 422
    problem = response.json()
    assert problem_type(response) == "validation"
    assert words in " ".join(problem["errors"][field])
    assert not ImageRequest.objects.exists()


def test_create_reports_what_the_web_form_reports(requester):
    """One rule, one message: the API's errors are the form's, word for word."""
    form = GenerationRequestForm({"prompt": "", "variants": "7", "aspect_ratio": "1:1"})
    form.is_valid()
    body = {"prompt": "", "variants": 7}
    errors = post(token_client(requester), "/api/v1/requests", body).json()["errors"]
    assert errors["prompt"] == form.errors["prompt"]
    assert errors["variants"] == form.errors["variants"]


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", '"a fox"'])
def test_create_refuses_a_body_that_is_not_a_json_object(requester, raw):
    response = token_client(requester).post("/api/v1/requests", raw, content_type=JSON)
    assert response.status_code == 422
    assert "__all__" in response.json()["errors"]


def png(size: tuple[int, int] = (96, 64)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 90, 40)).save(out, "PNG")
    return out.getvalue()


def upload(name: str, content: bytes) -> io.BytesIO:
    file = io.BytesIO(content)
    file.name = name
    return file


def test_create_edit_with_uploaded_references(requester):
    client = token_client(requester, "request")
    response = client.post(
        "/api/v1/requests",
        {
            "mode": "edit",
            "prompt": "make it blue",
            "references": [upload("one.png", png()), upload("two.png", png((50, 50)))],
        },
    )
    conforms(response)
    assert response.status_code == 201, response.content
    image_request = ImageRequest.objects.get()
    assert image_request.mode == "edit"
    assert image_request.aspect_ratio == "auto"
    references = list(image_request.assets.filter(kind="reference").order_by("index"))
    assert [(r.width, r.height) for r in references] == [(96, 64), (50, 50)]
    assert references[0].sha256 == hashlib.sha256(png()).hexdigest()
    assert len(response.json()["references"]) == 2


def test_create_edit_refuses_a_file_that_is_not_an_image(requester):
    response = token_client(requester).post(
        "/api/v1/requests",
        {"mode": "edit", "prompt": "x", "references": [upload("notes.png", b"plain text")]},
    )
    assert response.status_code == 422
    assert "notes.png" in response.json()["errors"]["references"][0]
    assert not Asset.objects.exists()


def test_create_edit_names_a_file_dropped_for_its_size(requester, settings):
    settings.UPLOAD_MAX_FILE_BYTES = 1024
    response = token_client(requester).post(
        "/api/v1/requests",
        {"mode": "edit", "prompt": "x", "references": [upload("huge.png", b"x" * 4096)]},
    )
    assert response.status_code == 422
    assert response.json()["errors"]["references"] == [
        "huge.png: the file is over the limit of 30 MB."
    ]
    assert not Asset.objects.exists()


def test_create_edit_of_an_earlier_output_reuses_it(requester):
    earlier = request_in_review(requester, real_images=False, variants=1)
    output = earlier.assets.get(kind="output")
    body = {"mode": "edit", "prompt": "again", "reference_output_ids": [output.pk]}
    response = post(token_client(requester), "/api/v1/requests", body)
    assert response.status_code == 201, response.content
    reference = ImageRequest.objects.get(pk=response.json()["id"]).assets.get()
    assert (reference.kind, reference.sha256, reference.file.name) == (
        "reference",
        output.sha256,
        output.file.name,
    )


def test_create_edit_refuses_another_requesters_output(requester, other_requester):
    output = request_in_review(other_requester, real_images=False, variants=1).assets.get()
    body = {"mode": "edit", "prompt": "mine now", "reference_output_ids": [output.pk, "x"]}
    response = post(token_client(requester), "/api/v1/requests", body)
    assert response.status_code == 422
    assert response.json()["errors"]["reference_output_ids"] == [
        f"No output {output.pk} that you may use.",
        "No output x that you may use.",
    ]


def test_a_reviewer_may_edit_anyones_output(reviewer, other_requester):
    output = request_in_review(other_requester, real_images=False, variants=1).assets.get()
    body = {"mode": "edit", "prompt": "variation", "reference_output_ids": [output.pk]}
    assert post(token_client(reviewer), "/api/v1/requests", body).status_code == 201


@pytest.fixture
def image_server():
    """A real HTTP server on 127.0.0.1 serving one PNG at /ref.png."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    content = png((80, 60))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path != "/ref.png":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_create_edit_fetches_reference_urls_through_the_download_guard(
    requester, image_server, settings
):
    settings.USE_SANDBOX = True  # the guard lets loopback through only for the sandbox
    settings.API_REFERENCE_URL_HOSTS = ["127.0.0.1"]
    body = {"mode": "edit", "prompt": "sharpen", "reference_urls": [f"{image_server}/ref.png"]}
    response = post(token_client(requester), "/api/v1/requests", body)
    assert response.status_code == 201, response.content
    reference = ImageRequest.objects.get().assets.get()
    assert (reference.width, reference.height) == (80, 60)


def test_create_edit_refuses_a_private_reference_url(requester, image_server, settings):
    settings.USE_SANDBOX = False
    body = {"mode": "edit", "prompt": "x", "reference_urls": [f"{image_server}/ref.png"]}
    response = post(token_client(requester), "/api/v1/requests", body)
    assert response.status_code == 422
    assert "non-public address" in response.json()["errors"]["reference_urls"][0]


def test_create_edit_reports_a_reference_url_that_fails(requester, image_server, settings):
    settings.USE_SANDBOX = True
    body = {"mode": "edit", "prompt": "x", "reference_urls": [f"{image_server}/gone.png"]}
    response = post(token_client(requester), "/api/v1/requests", body)
    assert response.status_code == 422
    assert "HTTP 404" in response.json()["errors"]["reference_urls"][0]


def test_create_edit_counts_every_kind_of_reference_against_the_limit(requester):
    output = request_in_review(requester, real_images=False, variants=1).assets.get()
    files = [upload(f"{n}.png", png()) for n in range(8)]
    response = token_client(requester).post(
        "/api/v1/requests",
        {"mode": "edit", "prompt": "x", "reference_output_ids": [output.pk], "references": files},
    )
    assert response.status_code == 422
    assert "At most 8 reference images (you gave 9)" in response.json()["errors"]["references"][0]


# --- listing and reading requests


def test_list_shows_a_requester_only_their_own(requester, other_requester):
    mine = request_in_review(requester, real_images=False, variants=1)
    request_in_review(other_requester, real_images=False, variants=1)
    response = conforms(token_client(requester, "read").get("/api/v1/requests"))
    assert [item["id"] for item in response.json()["items"]] == [mine.pk]
    assert response.json()["next_cursor"] is None


def test_list_shows_a_reviewer_everyones_unless_mine(requester, reviewer):
    theirs = request_in_review(requester, real_images=False, variants=1)
    own = request_in_review(reviewer, real_images=False, variants=1)
    client = token_client(reviewer, "read")
    assert [i["id"] for i in client.get("/api/v1/requests").json()["items"]] == [own.pk, theirs.pk]
    mine = client.get("/api/v1/requests?mine=true").json()["items"]
    assert [item["id"] for item in mine] == [own.pk]


def test_list_filters_by_status_mode_and_words(requester):
    fox = request_in_review(requester, prompt="a red fox", real_images=False, variants=1)
    request_in_review(requester, prompt="a blue whale", real_images=False, variants=1)
    ImageRequest.objects.create(requester=requester, prompt="a red kite")
    client = token_client(requester, "read")
    found = client.get("/api/v1/requests?status=in_review&mode=generate&q=red").json()["items"]
    assert [item["id"] for item in found] == [fox.pk]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=lost", "status"),
        ("mode=paint", "mode"),
        ("cursor=%%%", "cursor"),
        ("limit=0", "limit"),
        ("limit=lots", "limit"),
    ],
)
def test_list_reports_invalid_filters(requester, query, field):
    response = conforms(token_client(requester, "read").get(f"/api/v1/requests?{query}"))
    assert response.status_code == 422
    assert field in response.json()["errors"]


def test_list_pages_neither_skip_nor_repeat_while_requests_arrive(requester):
    client = token_client(requester, "read")
    for n in range(5):
        ImageRequest.objects.create(requester=requester, prompt=f"first {n}")
    expected = list(ImageRequest.objects.order_by("-id").values_list("pk", flat=True))
    seen, cursor = [], ""
    while True:
        page = conforms(client.get(f"/api/v1/requests?limit=2&cursor={cursor}")).json()
        seen += [item["id"] for item in page["items"]]
        ImageRequest.objects.create(requester=requester, prompt="arrived meanwhile")
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == expected


def test_list_needs_the_read_scope(requester):
    response = token_client(requester, "request").get("/api/v1/requests")
    assert response.status_code == 403


def test_read_shows_a_request_in_full(requester, reviewer):
    image_request = request_in_review(requester, variants=2, real_images=False)
    first, second = image_request.assets.filter(kind="output").order_by("pk")
    Decision.objects.create(output=first, reviewer=reviewer, verdict="approve")
    publication_of(first)
    Decision.objects.create(output=second, reviewer=reviewer, verdict="reject", reason="text")
    response = conforms(token_client(requester, "read").get(f"/api/v1/requests/{image_request.pk}"))
    body = response.json()
    assert body["status"] == "in_review"
    assert body["credits"] == "36.00"
    assert [o["verdict"] for o in body["outputs"]] == ["approved", "rejected"]
    assert body["outputs"][0]["sha256"] == first.sha256
    assert body["outputs"][0]["publication"]["state"] == "published"
    assert body["outputs"][1]["publication"] is None
    assert [d["verdict"] for d in body["decisions"]] == ["approve", "reject"]
    # As on the request's page, a requester is not told which reviewer decided.
    assert {d["reviewer"] for d in body["decisions"]} == {None}
    assert body["revisions"] == [{"id": image_request.pk, "revision": 1, "status": "in_review"}]
    assert body["is_final"] is False


def test_read_names_reviewers_to_reviewers(requester, reviewer):
    image_request = request_in_review(requester, variants=1, real_images=False)
    Decision.objects.create(output=image_request.assets.get(), reviewer=reviewer, verdict="approve")
    body = token_client(reviewer, "read").get(f"/api/v1/requests/{image_request.pk}").json()
    assert body["decisions"][0]["reviewer"] == "rita"


def test_read_answers_404_for_another_requesters_request(requester, other_requester):
    theirs = request_in_review(other_requester, variants=1, real_images=False)
    response = conforms(token_client(requester, "read").get(f"/api/v1/requests/{theirs.pk}"))
    assert response.status_code == 404
    assert problem_type(response) == "not-found"
    missing = token_client(requester, "read").get("/api/v1/requests/999999")
    assert missing.json() == {**response.json(), "detail": "No request 999999."}


def test_read_lists_the_whole_revision_chain(requester, reviewer):
    first = request_in_review(requester, variants=1, real_images=False)
    second = ImageRequest.objects.create(
        requester=requester, prompt="again", parent=first, revision=2
    )
    third = ImageRequest.objects.create(
        requester=requester, prompt="again", parent=second, revision=3
    )
    body = token_client(requester, "read").get(f"/api/v1/requests/{second.pk}").json()
    assert [r["id"] for r in body["revisions"]] == [first.pk, second.pk, third.pk]


# --- files


def test_files_download_with_their_sha256(requester):
    image_request = request_in_review(requester, variants=1, mode="edit", real_images=False)
    output = image_request.assets.get(kind="output")
    client = token_client(requester, "read")
    detail = client.get(f"/api/v1/requests/{image_request.pk}").json()
    response = client.get(detail["outputs"][0]["download_url"])
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert hashlib.sha256(b"".join(response.streaming_content)).hexdigest() == output.sha256
    thumbnail = client.get(detail["outputs"][0]["thumbnail_url"])
    assert thumbnail["Content-Type"] == "image/jpeg"
    reference = client.get(detail["references"][0]["download_url"])
    assert reference.status_code == 200


def test_files_of_another_requester_are_not_found(requester, other_requester):
    output = request_in_review(other_requester, variants=1, real_images=False).assets.get()
    client = token_client(requester, "read")
    for url in (f"/api/v1/outputs/{output.pk}/file", f"/api/v1/outputs/{output.pk}/thumbnail"):
        response = client.get(url)
        assert response.status_code == 404
        assert response["Content-Type"] == "application/problem+json"


def test_an_output_is_not_served_as_a_reference(requester):
    output = request_in_review(requester, variants=1, real_images=False).assets.get()
    response = token_client(requester, "read").get(f"/api/v1/references/{output.pk}/file")
    assert response.status_code == 404


# --- decisions, changes, publishing


@pytest.fixture
def in_review(requester):
    return request_in_review(requester, variants=1, real_images=False)


def output_of(image_request: ImageRequest) -> Asset:
    return image_request.assets.get(kind="output")


def test_a_reviewer_approves_an_output(in_review, reviewer):
    output = output_of(in_review)
    body = {"verdict": "approve", "comment": "lovely"}
    response = post(token_client(reviewer, "review"), f"/api/v1/outputs/{output.pk}/decision", body)
    conforms(response)
    assert response.status_code == 200
    assert response.json()["status"] == "approved"
    assert response.json()["outputs"][0]["verdict"] == "approved"
    decision = Decision.objects.get()
    assert (decision.reviewer, decision.verdict, decision.comment) == (
        reviewer,
        "approve",
        "lovely",
    )


def test_a_reject_needs_a_reason(in_review, reviewer):
    url = f"/api/v1/outputs/{output_of(in_review).pk}/decision"
    response = post(token_client(reviewer, "review"), url, {"verdict": "reject"})
    assert conforms(response).status_code == 422
    assert response.json()["errors"] == {"reason": ["Pick a reason for the reject."]}
    response = post(token_client(reviewer, "review"), url, {"verdict": "maybe"})
    assert "verdict" in response.json()["errors"]
    assert not Decision.objects.exists()


def test_a_reject_with_a_reason_rejects(in_review, reviewer):
    url = f"/api/v1/outputs/{output_of(in_review).pk}/decision"
    response = post(token_client(reviewer), url, {"verdict": "reject", "reason": "artefacts"})
    assert response.json()["status"] == "rejected"
    assert Decision.objects.get().reason == "artefacts"


def test_a_requester_may_not_decide(in_review, requester):
    url = f"/api/v1/outputs/{output_of(in_review).pk}/decision"
    response = post(token_client(requester), url, {"verdict": "approve"})
    assert conforms(response).status_code == 403
    assert not Decision.objects.exists()


def test_deciding_needs_the_review_scope(in_review, reviewer):
    url = f"/api/v1/outputs/{output_of(in_review).pk}/decision"
    response = post(token_client(reviewer, "read", "publish"), url, {"verdict": "approve"})
    assert response.status_code == 403
    assert "'review' scope" in response.json()["detail"]


def test_self_approval_is_refused(db):
    reviewer = make_user("rene", REVIEWERS)
    own = request_in_review(reviewer, variants=1, real_images=False)
    url = f"/api/v1/outputs/{output_of(own).pk}/decision"
    response = post(token_client(reviewer), url, {"verdict": "approve"})
    assert conforms(response).status_code == 403
    assert "someone else has to review it" in response.json()["detail"]
    assert not Decision.objects.exists()


def test_deciding_a_request_no_longer_in_review_is_a_conflict(in_review, reviewer):
    ImageRequest.objects.filter(pk=in_review.pk).update(status="approved")
    url = f"/api/v1/outputs/{output_of(in_review).pk}/decision"
    response = post(token_client(reviewer), url, {"verdict": "approve"})
    assert conforms(response).status_code == 409
    assert problem_type(response) == "conflict"


def test_deciding_a_missing_output_is_not_found(reviewer):
    response = post(token_client(reviewer), "/api/v1/outputs/4242/decision", {"verdict": "approve"})
    assert conforms(response).status_code == 404


def test_request_changes_submits_a_revision(in_review, reviewer, enqueued):
    url = f"/api/v1/outputs/{output_of(in_review).pk}/changes"
    body = {"prompt": "a lighthouse at dawn", "comment": "earlier light"}
    response = post(token_client(reviewer, "review"), url, body)
    conforms(response)
    assert response.status_code == 201
    revision = ImageRequest.objects.get(pk=response.json()["id"])
    assert (revision.parent_id, revision.revision, revision.prompt) == (
        in_review.pk,
        2,
        "a lighthouse at dawn",
    )
    # Omitted parameters are the request's own.
    assert (revision.variants, revision.aspect_ratio) == (in_review.variants, "1:1")
    in_review.refresh_from_db()
    assert in_review.status == "changes_requested"
    assert [r["id"] for r in response.json()["revisions"]] == [in_review.pk, revision.pk]


def test_request_changes_reports_invalid_fields(in_review, reviewer):
    url = f"/api/v1/outputs/{output_of(in_review).pk}/changes"
    response = post(token_client(reviewer), url, {"variants": 12, "prompt": ""})
    assert conforms(response).status_code == 422
    assert set(response.json()["errors"]) == {"variants", "prompt"}


def test_request_changes_is_for_reviewers(in_review, requester):
    url = f"/api/v1/outputs/{output_of(in_review).pk}/changes"
    assert post(token_client(requester), url, {}).status_code == 403


def test_publish_an_approved_output(
    in_review, reviewer, enqueued, django_capture_on_commit_callbacks
):
    output = output_of(in_review)
    Decision.objects.create(output=output, reviewer=reviewer, verdict="approve")
    client = token_client(reviewer, "publish")
    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, f"/api/v1/outputs/{output.pk}/publish", {})
    conforms(response)
    assert response.status_code == 202
    publication = Publication.objects.get()
    assert response.json()["publication"]["id"] == publication.pk
    assert response.json()["publication"]["state"] == "pending"
    assert [(job[0].rsplit(".", 1)[-1], *job[1:]) for job in enqueued] == [
        ("publish_output", publication.pk)
    ]


def test_publishing_an_unapproved_output_is_a_conflict(in_review, reviewer):
    url = f"/api/v1/outputs/{output_of(in_review).pk}/publish"
    response = post(token_client(reviewer, "publish"), url, {})
    assert conforms(response).status_code == 409
    assert not Publication.objects.exists()


def test_publishing_to_an_unknown_target_is_invalid(in_review, reviewer):
    url = f"/api/v1/outputs/{output_of(in_review).pk}/publish"
    response = post(token_client(reviewer), url, {"target": "moon"})
    assert response.status_code == 422
    assert "target" in response.json()["errors"]


def test_publishing_needs_the_publish_scope_and_a_reviewer(in_review, reviewer, requester):
    url = f"/api/v1/outputs/{output_of(in_review).pk}/publish"
    assert post(token_client(reviewer, "review"), url, {}).status_code == 403
    assert post(token_client(requester, "publish"), url, {}).status_code == 403


# --- the library's outputs


def test_outputs_lists_the_approved_ones_the_caller_may_see(requester, other_requester, reviewer):
    mine = request_in_review(requester, variants=2, real_images=False)
    approved, _ = mine.assets.filter(kind="output").order_by("pk")
    Decision.objects.create(output=approved, reviewer=reviewer, verdict="approve")
    theirs = output_of(request_in_review(other_requester, variants=1, real_images=False))
    Decision.objects.create(output=theirs, reviewer=reviewer, verdict="approve")
    response = conforms(token_client(requester, "read").get("/api/v1/outputs"))
    items = response.json()["items"]
    assert [(i["id"], i["published"], i["sha256"]) for i in items] == [
        (approved.pk, False, approved.sha256)
    ]
    everyone = token_client(reviewer, "read").get("/api/v1/outputs").json()["items"]
    assert [i["id"] for i in everyone] == [theirs.pk, approved.pk]


def test_outputs_narrows_to_published_and_to_one_request(requester, reviewer):
    first = request_in_review(requester, variants=2, real_images=False)
    one, two = first.assets.filter(kind="output").order_by("pk")
    for output in (one, two):
        Decision.objects.create(output=output, reviewer=reviewer, verdict="approve")
    publication_of(two)
    other = output_of(request_in_review(requester, variants=1, real_images=False))
    Decision.objects.create(output=other, reviewer=reviewer, verdict="approve")
    client = token_client(requester, "read")
    published = client.get("/api/v1/outputs?published=true").json()["items"]
    assert [(i["id"], i["published"]) for i in published] == [(two.pk, True)]
    of_first = client.get(f"/api/v1/outputs?request={first.pk}").json()["items"]
    assert [i["id"] for i in of_first] == [two.pk, one.pk]


def test_outputs_pages_through_every_output_once(requester, reviewer):
    image_request = request_in_review(requester, variants=3, real_images=False)
    for output in image_request.assets.filter(kind="output"):
        Decision.objects.create(output=output, reviewer=reviewer, verdict="approve")
    client = token_client(requester, "read")
    seen, cursor = [], ""
    while True:
        page = conforms(client.get(f"/api/v1/outputs?limit=2&cursor={cursor}")).json()
        seen += [item["id"] for item in page["items"]]
        if not (cursor := page["next_cursor"]):
            break
    outputs = image_request.assets.filter(kind="output").order_by("-pk")
    assert seen == list(outputs.values_list("pk", flat=True))


def test_outputs_lists_only_approved_ones(requester):
    response = token_client(requester, "read").get("/api/v1/outputs?approved=false")
    assert response.status_code == 422


def test_a_list_page_costs_the_same_queries_for_1_row_or_20(requester):
    client = token_client(requester, "read")

    def queries_for_a_page() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/api/v1/requests?limit=20").status_code == 200
        return len(captured)

    ImageRequest.objects.create(requester=requester, prompt="one")
    queries_for_a_page()  # the token's first use is noted, its rate window made
    one = queries_for_a_page()
    for n in range(25):
        ImageRequest.objects.create(requester=requester, prompt=f"more {n}")
    assert queries_for_a_page() == one
