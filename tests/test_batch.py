"""CSV batch import: the file check, the page, and the all-or-nothing creation."""

import html
import io
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from imagereview import actions
from imagereview.batch import import_rows, parse_batch, parse_batch_text
from imagereview.models import Event, Generation, ImageRequest

URL = reverse("import_batch")

GOOD = (
    "prompt,aspect_ratio,resolution,output_format,variants\n"
    "a lighthouse at dusk,3:2,2K,jpg,2\n"
    '"a red fox, in snow",,,,\n'
    "a bowl of ramen,9:16,4K,png,1\n"
)
MIXED = (
    "prompt,aspect_ratio,variants\n"
    "a valid one,1:1,1\n"
    ",1:1,1\n"
    f"{'x' * 10001},1:1,1\n"
    "odd shape,7:3,1\n"
    "too many,1:1,5\n"
    "another valid one,4:3,3\n"
)


def upload(client, content: str | bytes, name: str = "batch.csv"):
    data = content.encode() if isinstance(content, str) else content
    return client.post(URL, {"file": SimpleUploadedFile(name, data, content_type="text/csv")})


def hidden_csv(response) -> str:
    """The CSV text as a browser would send it back: unescaped, with CRLF line breaks."""
    match = re.search(
        r'<input type="hidden" name="csv" value="(.*?)"', response.content.decode(), re.S
    )
    assert match, "no hidden csv field on the page"
    return html.unescape(match.group(1)).replace("\n", "\r\n")


def test_batch_page_renders_with_the_third_tab(requester_client):
    response = requester_client.get(URL)
    assert response.status_code == 200
    body = response.content.decode()
    assert 'name="file"' in body
    assert f'href="{URL}" aria-current="page">CSV batch' in body
    assert "CSV batch" in requester_client.get(reverse("new_request")).content.decode()


def test_batch_requires_login(client, db):
    for response in (client.get(URL), client.post(URL, {"csv": GOOD})):
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))
    assert not ImageRequest.objects.exists()


def test_batch_happy_path_creates_every_row_after_confirming(
    requester_client, requester, django_capture_on_commit_callbacks, enqueued
):
    checked = upload(requester_client, GOOD)
    assert checked.status_code == 200
    assert "Create 3 requests" in checked.content.decode()
    assert not ImageRequest.objects.exists()

    with django_capture_on_commit_callbacks(execute=True):
        response = requester_client.post(URL, {"csv": hidden_csv(checked)}, follow=True)

    assert response.redirect_chain == [(reverse("my_requests"), 302)]
    assert "Created 3 requests from the CSV file." in response.content.decode()
    created = list(ImageRequest.objects.order_by("pk"))
    assert [
        (r.prompt, r.aspect_ratio, r.resolution, r.output_format, r.variants, r.mode)
        for r in created
    ] == [
        ("a lighthouse at dusk", "3:2", "2K", "jpg", 2, "generate"),
        ("a red fox, in snow", "1:1", "1K", "png", 1, "generate"),
        ("a bowl of ramen", "9:16", "4K", "png", 1, "generate"),
    ]
    assert all(r.requester == requester for r in created)
    assert [r.generations.count() for r in created] == [2, 1, 1]
    # Due at once for the dispatcher; nothing is sent from the web process.
    assert enqueued == []
    assert Generation.objects.filter(next_attempt_at__lte=timezone.now()).count() == 4


def test_batch_with_errors_creates_nothing_and_shows_each_rows_message(requester_client):
    response = upload(requester_client, MIXED)
    assert response.status_code == 400
    assert not ImageRequest.objects.exists()
    check = response.context["check"]
    assert [row.number for row in check.valid_rows] == [2, 7]
    errors = {row.number: row.errors for row in check.invalid_rows}
    assert errors == {
        3: ("Enter a prompt: describe the image you want.",),
        4: ("The prompt is too long: at most 10,000 characters (it has 10001).",),
        5: ("7:3 is not a valid aspect ratio; pick one from the list.",),
        6: ("Choose between 1 and 4 variants.",),
    }
    body = response.content.decode()
    for number, messages in errors.items():
        assert re.search(
            rf'<td class="row-number">{number}</td>.*?{re.escape(html.escape(messages[0]))}',
            body,
            re.S,
        )
    assert "Rows 3, 4, 5, 6 have errors" in body
    assert "Create the 2 valid rows only" in body
    assert "Create 6 requests" not in body


def test_batch_only_valid_rows_creates_just_those(requester_client, enqueued):
    checked = upload(requester_client, MIXED)
    response = requester_client.post(URL, {"csv": hidden_csv(checked), "only_valid": "1"})
    assert response.status_code == 302
    assert response["Location"] == reverse("my_requests")
    assert list(ImageRequest.objects.order_by("pk").values_list("prompt", "variants")) == [
        ("a valid one", 1),
        ("another valid one", 3),
    ]


def test_batch_confirm_without_the_choice_creates_nothing_while_errors_exist(requester_client):
    checked = upload(requester_client, MIXED)
    response = requester_client.post(URL, {"csv": hidden_csv(checked)})
    assert response.status_code == 400
    assert "Nothing was created" in response.content.decode()
    assert not ImageRequest.objects.exists()
    assert not Event.objects.exists()


def test_batch_confirm_checks_the_text_again(requester_client):
    checked = upload(requester_client, GOOD)
    assert checked.status_code == 200
    tampered = hidden_csv(checked).replace("a bowl of ramen,9:16", "a bowl of ramen,7:3")
    response = requester_client.post(URL, {"csv": tampered})
    assert response.status_code == 400
    assert "7:3 is not a valid aspect ratio" in response.content.decode()
    assert not ImageRequest.objects.exists()

    swapped = "prompt,variants\nsomething else entirely,4\n"
    response = requester_client.post(URL, {"csv": swapped})
    assert response.status_code == 302
    assert list(ImageRequest.objects.values_list("prompt", "variants")) == [
        ("something else entirely", 4)
    ]


def test_batch_confirm_of_a_tampered_oversized_text_is_refused(requester_client, settings):
    # Django's own limit would answer first; the cap must hold even if that is raised.
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
    text = "prompt\n" + "p,\n" * (5 * 1024 * 1024 // 3)
    response = requester_client.post(URL, {"csv": text})
    assert response.status_code == 400
    assert "larger than 5 MB" in response.content.decode()
    assert not ImageRequest.objects.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("prompt,style,seed\na cat,noir,1\n", "Unknown columns in the header: style, seed."),
        ("Prompt,Style\na cat,noir\n", "Unknown column in the header: style."),
        ("aspect_ratio\n1:1\n", "The header (row 1) has no prompt column"),
        ("prompt,prompt\na,b\n", "repeated: prompt"),
        ("", "The file is empty"),
        ("\n\n  \n", "The file is empty"),
        ("prompt,aspect_ratio\n", "The file has a header but no rows"),
        ("prompt,aspect_ratio\n,\n", "The file has a header but no rows"),
        (b"prompt\ncaf\xe9 au lait\n", "The file is not UTF-8 text (byte 11 is not valid UTF-8)"),
        ("prompt\na cat".encode("utf-16-le"), "The file is not UTF-8 text"),
        ('prompt\n"a cat" sat\n', "is not valid CSV"),
    ],
)
def test_batch_file_level_errors_are_clear_and_create_nothing(requester_client, content, message):
    response = upload(requester_client, content)
    assert response.status_code == 400
    assert any(message in error for error in response.context["check"].errors)
    assert html.escape(message) in response.content.decode()
    assert response.context["confirm_form"] is None
    assert not ImageRequest.objects.exists()


def test_batch_over_500_rows_is_refused_and_500_are_fine(requester_client):
    rows = "".join(f"prompt number {n}\n" for n in range(501))
    response = upload(requester_client, "prompt\n" + rows)
    assert response.status_code == 400
    assert "The file has 501 rows; at most 500 fit in one batch." in response.content.decode()
    assert len(parse_batch_text("prompt\n" + rows[: rows.rindex("prompt number 500")]).rows) == 500


def test_batch_over_5_mb_is_refused():
    check = parse_batch(io.BytesIO(b"prompt\n" + b"x" * (5 * 1024 * 1024)))
    assert check.errors == ("The file is larger than 5 MB; split it into smaller files.",)


def test_batch_upload_without_a_file_asks_for_one(requester_client):
    response = requester_client.post(URL, {})
    assert response.status_code == 400
    assert "Choose a CSV file to upload." in response.content.decode()


def test_batch_handles_a_bom_crlf_and_loose_spacing(requester_client):
    content = '\ufeffprompt, aspect_ratio ,variants\r\n"two\r\nlines", 4:3 , 2\r\n\r\n'.encode()
    response = upload(requester_client, content)
    assert response.status_code == 200
    (row,) = response.context["check"].rows
    assert row.values["aspect_ratio"] == "4:3"
    assert row.fields["prompt"] == "two\nlines"
    requester_client.post(URL, {"csv": hidden_csv(response)})
    assert ImageRequest.objects.get().prompt == "two\nlines"


def test_batch_row_numbers_count_the_header_and_skipped_blank_rows():
    check = parse_batch_text('prompt\n"multi\nline"\n\n,,\nthe fifth row\n')
    assert [row.number for row in check.rows] == [2, 5]


def test_batch_row_with_more_values_than_columns_is_an_error():
    (row,) = parse_batch_text("prompt,variants\na cat,2,extra\n").rows
    assert row.errors == ("This row has more values than the header has columns (2).",)
    (padded,) = parse_batch_text("prompt,variants\na cat,2,,\n").rows
    assert padded.is_valid


def test_batch_rows_set_the_review_policy_with_the_forms_rules(requester):
    check = parse_batch_text(
        "prompt,variants,required_approvals,approval_quota\n"
        "two of four,4,2,2\n"
        "the defaults,2,,\n"
        "more than asked for,2,1,3\n"
        "too many reviewers,1,6,1\n"
    )
    assert [row.number for row in check.valid_rows] == [2, 3]
    errors = {row.number: (row.errors, row.invalid_columns) for row in check.invalid_rows}
    assert errors == {
        4: (
            ("Need at most 2 approved outputs: only 2 variants are asked for.",),
            {"approval_quota"},
        ),
        5: (("Choose between 1 and 5 approvals per output.",), {"required_approvals"}),
    }
    created = import_rows(requester=requester, rows=check.valid_rows)
    assert [(r.required_approvals, r.approval_quota) for r in created] == [(2, 2), (1, 1)]


def test_batch_page_lists_the_review_policy_columns(requester_client):
    body = requester_client.get(URL).content.decode()
    assert "<code>required_approvals</code>" in body
    assert "<code>approval_quota</code>" in body


def test_batch_prompt_markup_is_shown_as_text(requester_client):
    response = upload(requester_client, 'prompt\n"<script>alert(1)</script><b>bold</b>"\n')
    body = response.content.decode()
    assert "<script>alert(1)</script>" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;b&gt;bold&lt;/b&gt;" in body


def test_import_rows_is_all_or_nothing(
    requester, monkeypatch, django_capture_on_commit_callbacks, enqueued
):
    real_create_request = actions.create_request
    calls = []

    def fail_on_the_second(**kwargs):
        calls.append(kwargs["prompt"])
        if len(calls) == 2:
            raise RuntimeError("database went away")
        return real_create_request(**kwargs)

    monkeypatch.setattr(actions, "create_request", fail_on_the_second)
    rows = parse_batch_text(GOOD).valid_rows
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError):
        import_rows(requester=requester, rows=rows)
    assert calls == ["a lighthouse at dusk", "a red fox, in snow"]
    assert not ImageRequest.objects.exists()
    assert not Generation.objects.exists()
    assert not Event.objects.exists()
    assert enqueued == []


def test_import_rows_refuses_rows_with_errors(requester):
    check = parse_batch_text(MIXED)
    with pytest.raises(ValueError, match=r"\[3, 4, 5, 6\]"):
        import_rows(requester=requester, rows=check.rows)
    assert not ImageRequest.objects.exists()


def test_batch_rows_say_whether_to_publish_on_approval(requester, requester_client):
    check = parse_batch_text(
        "prompt,auto_publish\npublish me,yes\nby hand,no\nas set up,\nunsure,maybe\n"
    )
    assert [row.number for row in check.valid_rows] == [2, 3, 4]
    (invalid,) = check.invalid_rows
    assert invalid.errors == ("Choose yes, no, or leave publishing as it is set up.",)
    created = import_rows(requester=requester, rows=check.valid_rows)
    assert [r.auto_publish for r in created] == [True, False, None]
    body = requester_client.get(URL).content.decode()
    assert "yes, no (default blank: as the site is set up)" in body
