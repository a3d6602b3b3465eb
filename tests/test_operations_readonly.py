"""Reviewers watch the operations dashboard read-only; only staff act on it."""

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from imagereview.actions import open_circuit
from imagereview.models import Alert, Event, Generation, ImageRequest, ProviderAccount
from tests.conftest import client_for, make_user

G = Generation.State
POST_FORM = re.compile(r'<form[^>]*method="post"[^>]*action="([^"]+)"')


@pytest.fixture
def admin(db):
    return make_user("ada", superuser=True)


@pytest.fixture
def trouble(db, requester) -> dict:
    """A generation stuck in submitted, an open alert, and a halted account."""
    image_request = ImageRequest.objects.create(
        requester=requester, prompt="a stuck one", status=ImageRequest.Status.GENERATING
    )
    stuck = Generation.objects.create(
        request=image_request, state=G.SUBMITTED, provider_task_id="task_stuck", attempts=1
    )
    Generation.objects.filter(pk=stuck.pk).update(submitted_at=timezone.now() - timedelta(hours=2))
    alert = Alert.objects.create(kind="low_credits", subject="kie", title="Credits run low")
    open_circuit(code=402, reason="credits ran out")
    return {"stuck": stuck, "alert": alert}


def post_actions(body: str) -> set[str]:
    """Where the page's forms that change something would post to (logging out aside)."""
    return set(POST_FORM.findall(body)) - {"/logout/"}


def test_reviewer_sees_the_figures_without_any_action(trouble, reviewer):
    response = client_for(reviewer).get("/operations/?period=7d")

    assert response.status_code == 200
    body = response.content.decode()
    assert f'data-generation="{trouble["stuck"].pk}"' in body
    assert "Credits run low" in body
    assert "402" in body and "credits ran out" in body
    assert post_actions(body) == set()
    assert "hx-post" not in body
    assert ">Refresh</button>" not in body and ">Resume now</button>" not in body
    assert 'href="/operations/alerts/"' not in body  # acknowledging is for staff
    assert 'href="/operations/"' in body  # the navigation link


def test_reviewer_gets_the_figures_fragment_without_actions(trouble, reviewer):
    response = client_for(reviewer).get("/operations/?period=7d", headers={"HX-Request": "true"})

    assert response.status_code == 200
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="figures"')
    assert f'data-generation="{trouble["stuck"].pk}"' in body
    assert 'method="post"' not in body


def test_reviewer_may_download_the_cost_report(trouble, reviewer):
    response = client_for(reviewer).get("/operations/cost.csv?period=7d")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")


def test_staff_still_see_every_action(trouble, admin):
    pk = trouble["stuck"].pk
    body = client_for(admin).get("/operations/?period=7d").content.decode()

    assert post_actions(body) == {
        f"/operations/generations/{pk}/refresh/",
        f"/operations/generations/{pk}/retry/",
        f"/operations/generations/{pk}/cancel/",
        "/operations/resume/",
    }
    fragment = client_for(admin).get("/operations/", headers={"HX-Request": "true"})
    assert len(post_actions(fragment.content.decode())) == 3


@pytest.mark.parametrize("action", ["refresh", "retry", "cancel"])
def test_reviewer_cannot_act_on_stuck_work(trouble, reviewer, action, enqueued):
    stuck = trouble["stuck"]
    events = Event.objects.count()

    response = client_for(reviewer).post(f"/operations/generations/{stuck.pk}/{action}/")

    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    stuck.refresh_from_db()
    assert (stuck.state, stuck.failure_code) == (G.SUBMITTED, "")
    assert not Generation.objects.filter(retry_of=stuck).exists()
    assert Event.objects.count() == events
    assert enqueued == []


def test_reviewer_cannot_acknowledge_an_alert(trouble, reviewer):
    alert = trouble["alert"]

    response = client_for(reviewer).post(f"/operations/alerts/{alert.pk}/acknowledge/")

    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    alert.refresh_from_db()
    assert (alert.state, alert.acknowledged_by) == (Alert.State.OPEN, None)


def test_reviewer_cannot_resume_submissions(trouble, reviewer):
    response = client_for(reviewer).post("/operations/resume/")

    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert ProviderAccount.objects.get().circuit_open
    assert not Event.objects.filter(subject="account", to_state="open").exists()


def test_requester_is_refused_page_and_fragment(trouble, requester):
    client = client_for(requester)

    assert client.get("/operations/").status_code == 403
    assert client.get("/operations/", headers={"HX-Request": "true"}).status_code == 403
    home = client.get("/library/").content.decode()
    assert 'href="/operations/"' not in home


def test_anonymous_is_sent_to_log_in(db):
    response = Client().get("/operations/")

    assert response.status_code == 302 and response["Location"].startswith("/login/")
