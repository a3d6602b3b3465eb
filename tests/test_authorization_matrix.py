"""Who may open what: every URL of the app against every kind of user, with the answer of each
cell written out, so a new view that forgets its permission check fails the suite.

Cells: an HTTP status a GET must answer exactly; LOGIN, a redirect to a login page; and for
POSTs (sent with a valid CSRF token, so a refusal is never the token's) OK, meaning anything
but a refusal (403, 404 or a redirect to a login page): the action may still decline on its
own terms, as long as it did not refuse the user.
"""

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from imagereview.actions.annotations import add_annotation
from imagereview.actions.guests import guest_token, share_requests
from imagereview.actions.tokens import issue_token
from imagereview.models import (
    Alert,
    Decision,
    Notification,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from imagereview.roles import REQUESTERS, REVIEWERS
from tests.conftest import make_user
from tests.factories import publication_of, request_in_review

LOGIN = "login"
OK = "ok"
ROLES = ("anonymous", "requester", "other", "reviewer", "admin")
CSRF_SECRET = "a" * 32


@dataclass(frozen=True)
class Entry:
    """One URL: how to reach it in the world below, and what each role gets."""

    method: str
    path: str
    anonymous: object
    requester: object
    other: object
    reviewer: object
    admin: object

    def expected(self, role: str) -> object:
        return getattr(self, role)


def get(path: str, anonymous, requester, other, reviewer, admin) -> Entry:
    return Entry("GET", path, anonymous, requester, other, reviewer, admin)


def post(path: str, anonymous, requester, other, reviewer, admin) -> Entry:
    return Entry("POST", path, anonymous, requester, other, reviewer, admin)


# Shorthands for the common rows.
def signed_in(method, path: str, status=200) -> Entry:
    return method(path, LOGIN, status, status, status, status)


def reviewers_only(method, path: str, ok=OK) -> Entry:
    return method(path, LOGIN, 403, 403, ok, ok)


def staff_only(method, path: str, ok=OK) -> Entry:
    return method(path, LOGIN, LOGIN, LOGIN, LOGIN, ok)


# Keyed by URL name. {r} is the requester's request in review, {o} its first output,
# {p} a publication of that output, {d} a decision on its second output,
# {g} its first generation, {e} a webhook endpoint, {w} a delivery to it, {a} an open alert,
# {n} a notification for the requester, {t} an API token of the requester, {l} a guest link
# (made by the reviewer) sharing {r}, {k} its token, and {x} a note on {o}.
MATRIX = {
    "home": get("/", LOGIN, 302, 302, 302, 302),
    "login": get("/login/", 200, 302, 302, 302, 302),
    # Logging out ends on the login page, whoever asks.
    "logout": post("/logout/", LOGIN, LOGIN, LOGIN, LOGIN, LOGIN),
    "my_requests": signed_in(get, "/requests/"),
    "new_request": signed_in(get, "/requests/new/"),
    "new_edit": get("/requests/new/edit/?from={o}", LOGIN, 200, 404, 200, 200),
    "import_batch": signed_in(get, "/requests/batch/"),
    "request_detail": get("/requests/{r}/", LOGIN, 200, 404, 200, 200),
    "review_queue": reviewers_only(get, "/review/", ok=200),
    "review_detail": reviewers_only(get, "/review/{r}/", ok=200),
    "claim_review": reviewers_only(post, "/review/{r}/claim/"),
    "release_review": reviewers_only(post, "/review/{r}/release/"),
    "bulk_decide": reviewers_only(post, "/review/bulk/"),
    "decide": reviewers_only(post, "/review/outputs/{o}/decide/"),
    "request_changes": reviewers_only(post, "/review/outputs/{o}/changes/"),
    "view_output": get("/review/outputs/{o}/view/", LOGIN, 200, 404, 200, 200),
    "undo_decision": reviewers_only(post, "/review/decisions/{d}/undo/"),
    # Notes: the requester reads them (GET) but may not write; another requester never sees.
    "output_notes": post("/outputs/{o}/notes/", LOGIN, 403, 404, OK, OK),
    "resolve_note": reviewers_only(post, "/notes/{x}/resolve/"),
    "reopen_note": reviewers_only(post, "/notes/{x}/reopen/"),
    "guest_links": reviewers_only(get, "/review/guest-links/", ok=200),
    "share_with_guest": reviewers_only(post, "/review/guest-links/new/"),
    "revoke_guest_link": reviewers_only(post, "/review/guest-links/{l}/revoke/"),
    # A guest is let in by the signed token {k} in the URL alone, whoever is signed in; the
    # request's page asks for the guest's name first.
    "guest_home": get("/guest/{k}/", 200, 200, 200, 200, 200),
    "guest_request": get("/guest/{k}/requests/{r}/", 302, 302, 302, 302, 302),
    "guest_decide": post("/guest/{k}/outputs/{o}/decide/", OK, OK, OK, OK, OK),
    "guest_comment": post("/guest/{k}/outputs/{o}/comment/", OK, OK, OK, OK, OK),
    "guest_notes": get("/guest/{k}/outputs/{o}/notes/", 200, 200, 200, 200, 200),
    "guest_file": get("/guest/{k}/assets/{o}/file/", 200, 200, 200, 200, 200),
    "library": signed_in(get, "/library/"),
    # The library holds one's own outputs (all of them for reviewers): another requester
    # has nothing to export and is sent back to it.
    "library_export": get("/library/export/", LOGIN, 200, 302, 200, 200),
    "library_publish": reviewers_only(post, "/library/publish/"),
    "asset_file": get("/assets/{o}/file/", LOGIN, 200, 404, 200, 200),
    "publish_output": reviewers_only(post, "/outputs/{o}/publish/"),
    # The output is published, so the panel answers "stop polling" (htmx's 286).
    "publication_panel": reviewers_only(get, "/outputs/{o}/publication/", ok=286),
    "retract_publication": reviewers_only(post, "/publications/{p}/retract/"),
    "published_file": get("/publications/{p}/file/", LOGIN, 200, 404, 200, 200),
    # The provider is no user: a callback is let in by the secret token in its URL alone,
    # and a wrong token is answered as an unknown generation, to everyone alike.
    "provider_callback": post("/callbacks/kie/{g}/wrong-token/", 404, 404, 404, 404, 404),
    "resume_submissions": staff_only(post, "/operations/resume/"),
    "alerts": staff_only(get, "/operations/alerts/", ok=200),
    "acknowledge_alert": staff_only(post, "/operations/alerts/{a}/acknowledge/"),
    "operations": get("/operations/", LOGIN, 403, 403, 200, 200),
    "operations_cost_csv": get("/operations/cost.csv", LOGIN, 403, 403, 200, 200),
    "operations_generation_action": staff_only(post, "/operations/generations/{g}/refresh/"),
    "webhook_endpoints": staff_only(get, "/webhooks/", ok=200),
    "new_webhook_endpoint": staff_only(get, "/webhooks/new/", ok=200),
    "webhook_endpoint": staff_only(get, "/webhooks/{e}/", ok=200),
    "rotate_webhook_secret": staff_only(post, "/webhooks/{e}/rotate/"),
    "redeliver_failed_webhooks": staff_only(post, "/webhooks/{e}/redeliver/"),
    "redeliver_webhook": staff_only(post, "/webhooks/deliveries/{w}/redeliver/"),
    "notifications": signed_in(get, "/notifications/"),
    "mark_notifications_read": post("/notifications/read/", LOGIN, OK, OK, OK, OK),
    "notification_settings": signed_in(get, "/notifications/settings/"),
    "open_notification": get("/notifications/{n}/", LOGIN, 302, 404, 404, 404),
    "api_tokens": signed_in(get, "/account/tokens/"),
    "new_api_token": signed_in(get, "/account/tokens/new/"),
    "revoke_api_token": post("/account/tokens/{t}/revoke/", LOGIN, OK, 404, 404, 404),
    # The Django admin is one entry: it lets in staff alone, on every page, by itself.
    "admin:index": staff_only(get, "/admin/", ok=200),
}

# Included URL trees with their own tests: the API under /api/v1/ is covered, role by role and
# scope by scope, in tests/test_api.py, tests/test_api_errors.py and tests/test_api_schema.py.
ELSEWHERE = ("api/v1/",)


def url_names(patterns=None, prefix: str = "", namespace: str = "") -> set[str]:
    """The name of every URL the app answers, admin pages summed up as `admin:index`."""
    names = set()
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            if route in ELSEWHERE:
                continue
            if pattern.namespace == "admin":
                names.add("admin:index")
                continue
            inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            names |= url_names(pattern.url_patterns, route, inner)
        elif isinstance(pattern, URLPattern):
            assert pattern.name, f"the URL {route} has no name, so it has no row in the matrix"
            names.add(namespace + pattern.name)
    return names


def test_every_pattern_is_in_the_matrix():
    assert url_names() - MATRIX.keys() == set(), "every pattern must be in the matrix"
    assert MATRIX.keys() - url_names() == set(), "the matrix names URLs that do not exist"


@pytest.fixture
def world(db, publish_root: Path) -> SimpleNamespace:
    """One of everything, owned by the requester where it is anyone's."""
    users = {
        "anonymous": AnonymousUser(),
        "requester": make_user("alice", REQUESTERS),
        "other": make_user("bob", REQUESTERS),
        "reviewer": make_user("rita", REVIEWERS),
        "admin": make_user("root", superuser=True),
    }
    image_request = request_in_review(users["requester"], variants=2, real_images=False)
    first, second = image_request.assets.filter(kind="output").order_by("generation__variant")
    decision = Decision.objects.create(output=second, reviewer=users["reviewer"], verdict="approve")
    endpoint = WebhookEndpoint.objects.create(url="https://hooks.example.com/in")
    event = WebhookEvent.objects.create(type="output.approved", payload={})
    delivery = WebhookDelivery.objects.create(
        event=event, endpoint=endpoint, state=WebhookDelivery.State.FAILED
    )
    alert = Alert.objects.create(kind="callback_delay", title="Callbacks are late")
    notification = Notification.objects.create(
        recipient=users["requester"],
        kind="decided",
        subject="Your request was decided",
        url=f"/requests/{image_request.pk}/",
        request=image_request,
    )
    token, _ = issue_token(user=users["requester"], name="laptop", scopes=("read",))
    link = share_requests(requests=[image_request], created_by=users["reviewer"], may_decide=True)
    note = add_annotation(
        output=first, author=users["reviewer"], shape="pin", x=0.5, y=0.5, comment="too dark"
    )
    publication = publication_of(first)
    published = publish_root / publication.key
    published.parent.mkdir(parents=True)
    published.write_bytes(first.file.read())
    ids = {
        "r": image_request.pk,
        "o": first.pk,
        "p": publication.pk,
        "d": decision.pk,
        "g": first.generation_id,
        "e": endpoint.pk,
        "w": delivery.pk,
        "a": alert.pk,
        "n": notification.pk,
        "t": token.pk,
        "l": link.pk,
        "k": guest_token(link),
        "x": note.pk,
    }
    return SimpleNamespace(users=users, ids=ids)


def client_as(user) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.cookies["csrftoken"] = CSRF_SECRET
    if user.is_authenticated:
        client.force_login(user)
    return client


def is_login_redirect(response) -> bool:
    location = response.get("Location", "")
    return response.status_code == 302 and location.split("?")[0] in ("/login/", "/admin/login/")


def cell(entry: Entry, path: str, user) -> object:
    """What `user` gets from the entry, as the matrix writes it."""
    client = client_as(user)
    if entry.method == "GET":
        response = client.get(path)
    else:
        response = client.post(path, headers={"X-CSRFToken": CSRF_SECRET})
    if is_login_redirect(response):
        return LOGIN
    return response.status_code


@pytest.mark.parametrize("name", sorted(MATRIX))
def test_each_role_gets_what_the_matrix_says(world, name):
    entry = MATRIX[name]
    path = entry.path.format(**world.ids)
    expected, seen = {}, {}
    for role in ROLES:
        # Each role meets the world as the fixture made it: what one role's POST changed is
        # rolled back before the next.
        with transaction.atomic():
            got = cell(entry, path, world.users[role])
            transaction.set_rollback(True)
        expected[role] = entry.expected(role)
        refused = got in (LOGIN, 403, 404)
        seen[role] = OK if expected[role] == OK and not refused else got
    assert seen == expected, f"{entry.method} {path}"
