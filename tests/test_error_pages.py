"""The app's own 403, 404 and 500 pages, and DEBUG (with its URL list) off unless asked for."""

import pytest
from django.template.loader import render_to_string
from django.test import Client
from django.urls import path, reverse

from imagereview.models import ImageRequest
from imagereview.urls import urlpatterns as app_urlpatterns
from tests.test_settings import load_settings

STYLESHEET = "/static/css/app.css"


def boom(request):
    raise RuntimeError("a secret detail that must not reach the page")


urlpatterns = [*app_urlpatterns, path("boom/", boom)]


def test_a_requester_opening_a_reviewer_page_gets_the_styled_403(requester_client, requester):
    image_request = ImageRequest.objects.create(requester=requester, prompt="p")
    response = requester_client.get(reverse("review_detail", args=[image_request.pk]))
    assert response.status_code == 403
    assert "403.html" in [template.name for template in response.templates]
    page = response.content.decode()
    assert STYLESHEET in page
    assert "Only reviewers can do this." in page
    assert reverse("my_requests") in page  # the navigation of a signed-in person


def test_an_unknown_id_gets_the_apps_404(requester_client):
    response = requester_client.get(reverse("request_detail", args=[987654]))
    assert response.status_code == 404
    page = response.content.decode()
    assert "Nothing here" in page and STYLESHEET in page
    assert "URLconf" not in page and "review/bulk/" not in page


def test_an_unknown_path_gets_the_apps_404_for_strangers_too(client):
    response = client.get("/no/such/place/")
    assert response.status_code == 404
    assert "Nothing here" in response.content.decode()


@pytest.mark.urls("tests.test_error_pages")
def test_a_server_error_gets_the_apps_500_without_its_details(client):
    client.raise_request_exception = False
    response = client.get("/boom/")
    assert response.status_code == 500
    page = response.content.decode()
    assert "Something went wrong" in page and STYLESHEET in page
    assert "secret detail" not in page


def test_the_500_page_renders_without_a_request_or_context():
    page = render_to_string("500.html")
    assert "Something went wrong" in page


def test_debug_is_off_unless_the_environment_asks_for_it(tmp_path):
    """`make run` starts with the defaults: no debug pages listing every URL."""
    assert load_settings(tmp_path).stdout.split()[0] == "False"
    assert load_settings(tmp_path, DEBUG="1").stdout.split()[0] == "True"


def test_a_form_without_its_csrf_token_gets_the_apps_page(requester):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(requester)
    response = strict.post(reverse("new_request"), {"prompt": "a cat"})
    assert response.status_code == 403
    page = response.content.decode()
    assert "This form could not be sent" in page and STYLESHEET in page
