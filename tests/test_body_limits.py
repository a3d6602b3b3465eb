"""Request bodies over their page's cap are refused by their declared length, unread."""

import socket
import time
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import SkipFile
from django.http import HttpResponse
from django.test import RequestFactory
from django.urls import reverse

from imagereview.bodylimits import FileSizeCapUploadHandler, RequestBodyLimitMiddleware
from imagereview.models import ImageRequest

HUGE = 250 * 1024 * 1024


def raw_post(url: str, path: str, *, declared: int, sent: bytes, content_type: str) -> bytes:
    """POST `sent` while declaring `declared` bytes; the answer's head, or what came of it
    before the server went on waiting for the rest of the body."""
    address = urlsplit(url)
    with socket.create_connection((address.hostname, address.port), timeout=5) as connection:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {address.hostname}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {declared}\r\n\r\n"
        )
        connection.sendall(head.encode() + sent)
        answer = b""
        try:
            while b"\r\n\r\n" not in answer and (chunk := connection.recv(4096)):
                answer += chunk
        except TimeoutError:
            pass
        return answer


@pytest.mark.django_db(transaction=True)
def test_a_strangers_huge_upload_is_refused_before_its_body_is_read(live_server):
    started = time.monotonic()
    answer = raw_post(
        live_server.url,
        reverse("new_edit"),
        declared=HUGE,
        sent=b"--x\r\n" + b"a" * 1024,
        content_type="multipart/form-data; boundary=x",
    )
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert time.monotonic() - started < 2


@pytest.mark.django_db(transaction=True)
def test_a_huge_api_body_is_answered_by_the_apis_own_problem(live_server):
    answer = raw_post(
        live_server.url,
        "/api/v1/requests",
        declared=HUGE,
        sent=b"{}",
        content_type="application/json",
    )
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"application/problem+json" in answer


def _answer(path: str, *, declared: int, user) -> int:
    request = RequestFactory().post(path, b"", content_type="application/octet-stream")
    request.META["CONTENT_LENGTH"] = str(declared)
    request.user = user
    return RequestBodyLimitMiddleware(lambda request: HttpResponse("read"))(request).status_code


def test_caps_depend_on_the_page_and_on_being_signed_in(requester, settings):
    settings.REQUEST_MAX_ANONYMOUS_BODY_BYTES = 1000
    settings.REQUEST_MAX_BODY_BYTES = 2000
    settings.REQUEST_MAX_UPLOAD_BODY_BYTES = 3000
    edit, new = reverse("new_edit"), reverse("new_request")
    anonymous = AnonymousUser()
    assert _answer(edit, declared=1000, user=anonymous) == 200
    assert _answer(edit, declared=1001, user=anonymous) == 413
    assert _answer("/no/such/page/", declared=1001, user=anonymous) == 413
    assert _answer(new, declared=2000, user=requester) == 200
    assert _answer(new, declared=2001, user=requester) == 413
    assert _answer(edit, declared=3000, user=requester) == 200
    assert _answer(edit, declared=3001, user=requester) == 413


def test_an_unreadable_content_length_is_left_to_django(requester):
    for declared in ("abc", "-5"):
        request = RequestFactory().post("/", b"", content_type="text/plain")
        request.META["CONTENT_LENGTH"] = declared
        request.user = requester
        response = RequestBodyLimitMiddleware(lambda request: HttpResponse("read"))(request)
        assert response.status_code == 200


def test_one_file_over_the_upload_cap_stops_the_upload(settings):
    settings.UPLOAD_MAX_FILE_BYTES = 100
    handler = FileSizeCapUploadHandler()
    handler.new_file("references", "a.png", "image/png", 0)
    assert handler.receive_data_chunk(b"x" * 60, 0) == b"x" * 60
    handler.new_file("references", "b.png", "image/png", 0)
    assert handler.receive_data_chunk(b"x" * 100, 0) == b"x" * 100
    with pytest.raises(SkipFile):
        handler.receive_data_chunk(b"x", 100)


def test_a_signed_in_upload_over_the_file_cap_is_refused_without_an_error(
    requester_client, settings
):
    settings.UPLOAD_MAX_FILE_BYTES = 1024
    requester_client.raise_request_exception = False
    response = requester_client.post(
        reverse("new_edit"),
        {
            "prompt": "make it blue",
            "references": [_file("big.png", 4096)],
            "aspect_ratio": "1:1",
            "resolution": "1K",
            "output_format": "png",
            "variants": "1",
        },
    )
    assert response.status_code == 400
    errors = response.context["form"].errors
    # The form names the file that was dropped for its size, not just a missing reference.
    assert errors == {"references": ["big.png: the file is over the limit of 30 MB."]}
    assert not ImageRequest.objects.exists()


def _file(name: str, size: int) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, b"\x89PNG" + b"0" * (size - 4), content_type="image/png")
