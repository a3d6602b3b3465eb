"""The Content-Security-Policy: what every page is sent, and templates that keep to it."""

import json
import re
from pathlib import Path

import pytest
from django.conf import settings

from tests.conftest import client_for, make_user

TEMPLATES = Path(settings.BASE_DIR) / "templates"
# Emails are read in mail clients, which take no CSP and want their styles inline.
EMAIL_TEMPLATES = TEMPLATES / "notifications" / "email"

# What a policy may not hold anywhere: inline code, eval, and any other origin.
LOOSE_SOURCES = ("'unsafe-inline'", "'unsafe-eval'", "'unsafe-hashes'", "*", "http:", "https:")


def policy_of(response) -> dict[str, list[str]]:
    header = response.headers.get("Content-Security-Policy", "")
    directives = (part.split() for part in header.split(";") if part.strip())
    return {name: sources for name, *sources in directives}


def served_templates() -> list[Path]:
    return [
        path
        for path in sorted(TEMPLATES.rglob("*.html"))
        if not path.is_relative_to(EMAIL_TEMPLATES)
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/login/", "/", "/review/", "/operations/", "/admin/"])
def test_every_page_is_sent_the_strict_policy(path):
    admin = make_user("ada", superuser=True)
    policy = policy_of(client_for(admin).get(path, follow=True))
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["connect-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'self'"]
    assert policy["form-action"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]


@pytest.mark.django_db
def test_no_directive_allows_inline_code_or_another_origin(requester):
    policy = policy_of(client_for(requester).get("/"))
    assert policy
    for name, sources in policy.items():
        assert not set(sources) & set(LOOSE_SOURCES), (name, sources)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path, source",
    [("/api/v1/docs", "data:"), ("/requests/new/edit/", "blob:")],
    ids=["api docs: icons drawn as data: SVG", "edit page: previews of chosen files"],
)
def test_pages_that_need_more_add_only_one_image_source(requester, path, source):
    wider = policy_of(client_for(requester).get(path))
    page = policy_of(client_for(requester).get("/"))
    assert wider.pop("img-src") == ["'self'", source]
    assert page.pop("img-src") == ["'self'"]
    assert wider == page


def test_anonymous_and_error_pages_are_sent_the_policy_too(client, db):
    assert policy_of(client.get("/login/"))["default-src"] == ["'self'"]
    assert policy_of(client.get("/no-such-page/"))["default-src"] == ["'self'"]


@pytest.mark.parametrize("template", served_templates(), ids=lambda path: str(path.name))
def test_templates_hold_no_inline_script_style_or_handler(template: Path):
    text = template.read_text()
    inline_scripts = re.findall(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>", text)
    assert not inline_scripts, "move the script to a file under static/js"
    assert not re.search(r"<style\b", text), "move the styles to static/css/app.css"
    assert not re.search(r"\sstyle=", text), "use a class from static/css/app.css"
    assert not re.search(r"\son[a-z]+=", text), "add the listener from a file under static/js"
    assert not re.search(r"hx-on", text), "hx-on runs inline code: add a listener instead"
    assert not re.search(r"hx-trigger=\"[^\"]*\[", text), "a trigger filter is evaluated code"
    assert "javascript:" not in text


def htmx_config() -> dict:
    base = (TEMPLATES / "base.html").read_text()
    return json.loads(re.search(r"name=\"htmx-config\" content='([^']*)'", base).group(1))


def test_htmx_is_told_not_to_inject_its_indicator_styles():
    assert htmx_config()["includeIndicatorStyles"] is False


def test_htmx_never_writes_a_style_attribute_when_it_settles_a_swap():
    assert "style" not in htmx_config()["attributesToSettle"]
