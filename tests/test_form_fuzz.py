"""Property-based fuzzing of what a person can type or upload: the CSV batch parser and every
form. Whatever comes in, the answer is a result or form errors, never an exception, and
checking writes nothing.

The examples per test are bounded so that the suite stays quick; FUZZ_EXAMPLES raises them
for a longer run (`FUZZ_EXAMPLES=2000 pytest tests/test_form_fuzz.py`).
"""

import base64
import io
import os
import socket

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils.datastructures import MultiValueDict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imagereview import batch, forms
from imagereview.models import Asset, Decision, ImageRequest, WebhookEndpoint
from tests.conftest import client_for
from tests.factories import request_in_review, small_picture

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))
fuzz = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Values near what the fields expect, and anything at all.
# fmt: off
LIKELY = [
    "", " ", "0", "1", "2", "4", "9", "-1", "1.5", "²", "9" * 30, "yes", "no", "on", "true",
    "1:1", "16:9", "auto", "1K", "4K", "png", "jpg", "approve", "reject", "artifacts", "edit",
    "generate", "local", "2024-01-01", "2024-02-30", "<script>", "\x00",
    "https://example.com/h", "http://127.0.0.1:9/h", "http://[::1]/", "http://10.0.0.1/",
]
# fmt: on
values = st.one_of(st.sampled_from(LIKELY), st.text(max_size=300))
GOOD_PICTURE = small_picture()
IMAGE_STARTS = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"GIF8"]
file_bytes = st.one_of(
    st.binary(max_size=2000),
    st.tuples(st.sampled_from(IMAGE_STARTS), st.binary(max_size=2000)).map(b"".join),
    st.just(GOOD_PICTURE),
    st.just(GOOD_PICTURE[: len(GOOD_PICTURE) // 2]),
)


# Names as Django's multipart parser hands them on: without directories.
file_names = st.text(max_size=40).map(lambda name: "f" + name.replace("/", "_").replace("\\", "_"))


def form_data(names: list[str]) -> st.SearchStrategy[MultiValueDict]:
    """Posted data for a form: each field absent, once or several times, and stray names."""
    fields = st.dictionaries(
        st.one_of(st.sampled_from(names), st.text(max_size=10)),
        st.lists(values, max_size=3),
        max_size=len(names) + 2,
    )
    return fields.map(MultiValueDict)


def rows_written() -> tuple[int, ...]:
    return tuple(
        model.objects.count() for model in (ImageRequest, Asset, Decision, WebhookEndpoint)
    )


@pytest.fixture
def fake_resolver(monkeypatch):
    """Names resolve to one public address, or not at all, without asking a DNS server."""

    def getaddrinfo(host, port, *args, **kwargs):
        if str(host).endswith(".invalid"):
            raise socket.gaierror("no such name")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port or 443))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def output(db, requester) -> Asset:
    image_request = request_in_review(requester, variants=1, real_images=False)
    return image_request.assets.get(kind=Asset.Kind.OUTPUT)


# The CSV batch parser.

csv_cells = st.one_of(
    st.sampled_from(LIKELY),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=40),
    st.just('"'),
)


@st.composite
def csv_texts(draw) -> str:
    """CSV text with a header of known, unknown and repeated columns and ragged rows."""
    header = draw(st.lists(st.sampled_from([*batch.COLUMNS, "Prompt ", "", "colour"]), max_size=9))
    rows = draw(st.lists(st.lists(csv_cells, max_size=len(header) + 2), max_size=8))
    out = io.StringIO()
    lines = [header, *rows]
    separator = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    for cells in lines:
        quoted = (f'"{cell}"' if draw(st.booleans()) else cell for cell in cells)
        out.write(",".join(quoted) + separator)
    return out.getvalue()


def assert_well_formed(check: batch.BatchCheck) -> None:
    assert check.errors or check.rows
    if check.errors:
        assert not check.rows
    for row in check.rows:
        assert row.is_valid != bool(row.errors)
        if row.is_valid:
            assert row.fields["prompt"].strip()
            assert row.fields["variants"] in range(1, forms.MAX_VARIANTS + 1)
    assert len(check.rows) <= batch.MAX_BATCH_ROWS


@pytest.mark.django_db
@fuzz
@given(raw=st.one_of(st.binary(max_size=3000), csv_texts().map(str.encode)))
def test_any_uploaded_file_is_checked_without_an_exception(raw):
    before = rows_written()
    assert_well_formed(batch.parse_batch(io.BytesIO(raw)))
    assert rows_written() == before


@pytest.mark.django_db
@fuzz
@given(text=st.one_of(csv_texts(), st.text(max_size=2000)))
def test_the_confirmation_checks_the_text_exactly_as_the_upload_was(text):
    first = batch.parse_batch_text(text)
    assert_well_formed(first)
    # The confirmation page sends the checked text back with CRLF line breaks.
    again = batch.parse_batch_text(first.text.replace("\n", "\r\n"))
    assert again == first


# Every form.

PLAIN_FORMS = [
    forms.GenerationRequestForm,
    forms.DecisionForm,
    forms.BulkDecisionForm,
    forms.QueueFilterForm,
    forms.PublishForm,
    forms.RetractForm,
    forms.LibraryFilterForm,
    forms.LibrarySelectionForm,
    batch.BatchConfirmForm,
]


def check_form(form) -> None:
    """Validate `form`: it may be invalid, but only by form errors, and its values typed."""
    if form.is_valid():
        for name, field in form.fields.items():
            if hasattr(field, "choices") and not getattr(field, "valid_value", None):
                continue
            assert name in form.cleaned_data
        if hasattr(form, "request_fields"):
            form.request_fields()
    else:
        assert form.errors


@pytest.mark.django_db
@pytest.mark.parametrize("form_class", PLAIN_FORMS, ids=lambda form: form.__name__)
def test_plain_forms_refuse_anything_only_with_form_errors(form_class):
    names = list(form_class.base_fields)

    @fuzz
    @given(data=form_data(names))
    def check(data):
        before = rows_written()
        check_form(form_class(data=data))
        assert rows_written() == before

    check()


@pytest.mark.django_db
@fuzz
@given(data=form_data(list(forms.GenerationRequestForm.base_fields)))
def test_a_valid_request_form_asks_only_for_what_the_provider_takes(data):
    form = forms.GenerationRequestForm(data=data)
    if form.is_valid():
        fields = form.request_fields()
        assert 1 <= fields["approval_quota"] <= fields["variants"]
        assert 1 <= fields["required_approvals"] <= forms.MAX_REQUIRED_APPROVALS
        assert fields["aspect_ratio"] in forms.AspectRatio.values


@pytest.mark.django_db
@fuzz
@given(
    data=form_data(list(forms.EditRequestForm.base_fields)),
    uploads=st.lists(st.tuples(file_names, file_bytes), max_size=3),
)
def test_the_edit_form_refuses_any_upload_that_is_not_an_image_with_form_errors(data, uploads):
    files = MultiValueDict(
        {"references": [SimpleUploadedFile(name, body) for name, body in uploads]}
    )
    before = rows_written()
    form = forms.EditRequestForm(data=data, files=files)
    check_form(form)
    all_pictures = uploads and all(body == GOOD_PICTURE for _, body in uploads)
    assert ("references" in form.errors) != all_pictures
    assert rows_written() == before


@pytest.mark.django_db
@fuzz
@given(body=file_bytes, name=file_names)
def test_the_batch_upload_form_takes_any_file_and_the_parser_any_content(body, name):
    form = batch.BatchUploadForm(files={"file": SimpleUploadedFile(name, body)})
    check_form(form)
    if form.is_valid():
        assert_well_formed(batch.parse_batch(form.cleaned_data["file"]))


@pytest.mark.django_db
def test_the_changes_form_refuses_anything_only_with_form_errors(output):
    names = list(forms.ChangesForm.base_fields)

    @fuzz
    @given(data=form_data(names))
    def check(data):
        before = rows_written()
        check_form(forms.ChangesForm(data=data, output=output))
        assert rows_written() == before

    check()


@pytest.mark.django_db
def test_the_webhook_form_refuses_anything_only_with_form_errors(fake_resolver):
    names = list(forms.WebhookEndpointForm.base_fields)
    urls = st.builds(
        "{}://{}{}/{}".format,
        st.sampled_from(["http", "https", "ftp", "HTTPS", "javascript"]),
        st.sampled_from(
            [
                "example.com",
                "127.0.0.1",
                "10.1.2.3",
                "[::1]",
                "169.254.169.254",
                "x.invalid",
                "0x7f.1",
                "2130706433",
                "例え.jp",
                "a..b",
                "",
            ]
        ),
        st.sampled_from(["", ":0", ":65536", ":443", ":x"]),
        st.text(max_size=20),
    )

    @fuzz
    @given(data=form_data(names), url=st.one_of(urls, values))
    def check(data, url):
        data.setlist("url", [url])
        before = rows_written()
        check_form(forms.WebhookEndpointForm(data=data))
        assert rows_written() == before

    check()


@pytest.mark.django_db
@pytest.mark.parametrize("reviewer, staff", [(False, False), (True, True)])
def test_the_notification_form_refuses_anything_only_with_form_errors(reviewer, staff):
    names = list(forms.NotificationPreferenceForm.base_fields)

    @fuzz
    @given(data=form_data(names))
    def check(data):
        check_form(forms.NotificationPreferenceForm(data=data, reviewer=reviewer, staff=staff))

    check()


# The views that take these forms: refused input is answered, never a server error.

cursor_parts = st.one_of(
    st.sampled_from(
        [
            "9999-12-31T23:59:59-14:00",
            "0001-01-01T00:00:00+14:00",
            "2024-01-01",
            "1",
            "-1",
            "9" * 25,
            "nan",
            "",
        ]
    ),
    st.text(max_size=20),
)
cursors = st.one_of(
    values,
    st.lists(cursor_parts, min_size=1, max_size=3).map(
        lambda parts: base64.urlsafe_b64encode("|".join(parts).encode()).decode()
    ),
)


@pytest.mark.django_db
@pytest.mark.parametrize("edge", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"])
def test_a_cursor_past_the_calendar_in_utc_starts_the_pages_over(requester, reviewer, edge):
    request_in_review(requester, variants=1, real_images=False)
    cursor = base64.urlsafe_b64encode(f"{edge}|1".encode()).decode()
    for url, viewer in ((reverse("review_queue"), reviewer), (reverse("library"), requester)):
        answer = client_for(viewer).get(url, {"after": cursor})
        assert answer.status_code == 200
        assert b"library-item" in answer.content or b"queue-link" in answer.content


@pytest.mark.django_db
def test_the_reviewer_views_answer_any_input_without_an_error(requester, reviewer):
    image_request = request_in_review(requester, variants=1, real_images=False)
    output = image_request.assets.get(kind=Asset.Kind.OUTPUT)
    client = client_for(reviewer)
    queue_names = list(forms.QueueFilterForm.base_fields)
    decision_names = list(forms.BulkDecisionForm.base_fields)

    @fuzz
    @given(
        queue=form_data(queue_names),
        library=form_data(list(forms.LibraryFilterForm.base_fields)),
        cursor=cursors,
        decision=form_data(decision_names),
    )
    def check(queue, library, cursor, decision):
        decisions = Decision.objects.count()
        queue.setlist("after", [cursor])
        library.setlist("after", [cursor])
        assert client.get(reverse("review_queue"), queue).status_code == 200
        assert client.get(reverse("library"), library).status_code == 200
        assert client.get(reverse("review_detail", args=[image_request.pk]), queue).status_code
        for url in (reverse("decide", args=[output.pk]), reverse("bulk_decide")):
            assert client.post(url, decision).status_code < 500
        if not forms.DecisionForm(data=decision).is_valid():
            assert Decision.objects.count() == decisions

    check()


@pytest.mark.django_db
def test_the_intake_views_answer_any_input_and_write_only_valid_requests(requester):
    client = client_for(requester)

    @fuzz
    @given(
        data=form_data(list(forms.GenerationRequestForm.base_fields)),
        csv=st.one_of(csv_texts(), st.text(max_size=500)),
    )
    def check(data, csv):
        created = ImageRequest.objects.count()
        assert client.post(reverse("new_request"), data).status_code < 500
        valid = forms.GenerationRequestForm(data=data).is_valid()
        assert ImageRequest.objects.count() == created + valid
        created = ImageRequest.objects.count()
        answer = client.post(reverse("import_batch"), {"csv": csv, "only_valid": "on"})
        assert answer.status_code < 500
        valid_rows = batch.parse_batch_text(csv).valid_rows
        assert ImageRequest.objects.count() == created + len(valid_rows)

    check()
