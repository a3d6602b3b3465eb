"""Notes on outputs: where they may go, who writes and resolves them, and revisions asked
for from them (the prompt written from the notes, the guide image sent to the provider)."""

import io
from datetime import timedelta

import httpx
import pytest
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from imagereview import actions, guides
from imagereview.actions.annotations import (
    AnnotationRefused,
    add_annotation,
    reopen_annotation,
    resolve_annotation,
)
from imagereview.models import Annotation, Asset, Decision, Generation, GuestLink, ImageRequest
from imagereview.queries.annotations import annotations_for_request, output_annotations
from imagereview.roles import REVIEWERS
from tests.conftest import client_for, make_user, wait_for
from tests.factories import request_in_review, stored_asset

pytestmark = pytest.mark.django_db

GREEN = (40, 160, 90)
SIZE = (400, 300)
CHANGES = {
    "prompt": "a lighthouse at dusk",
    "aspect_ratio": "4:3",
    "resolution": "1K",
    "output_format": "png",
    "variants": "1",
}


def solid_png(size=SIZE, colour=GREEN) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


def output_of(requester) -> Asset:
    """The one output of a request in review: a plain green 400x300 picture."""
    image_request = request_in_review(requester, variants=1, real_images=False)
    output = image_request.assets.get(kind=Asset.Kind.OUTPUT)
    generation = output.generation
    output.delete()
    return stored_asset(
        image_request, solid_png(), kind=Asset.Kind.OUTPUT, generation=generation, index=0
    )


@pytest.fixture
def output(requester) -> Asset:
    return output_of(requester)


def box(output, reviewer, comment="remove the second lamp post", **place) -> Annotation:
    where = {"x": 0.25, "y": 0.25, "width": 0.5, "height": 0.5} | place
    return add_annotation(output=output, author=reviewer, shape="box", comment=comment, **where)


def pin(output, reviewer, comment="this sign is misspelt", x=0.8, y=0.9) -> Annotation:
    return add_annotation(output=output, author=reviewer, shape="pin", x=x, y=y, comment=comment)


def guest_link(output, creator, **fields) -> GuestLink:
    link = GuestLink.objects.create(
        created_by=creator, expires_at=timezone.now() + timedelta(days=1), **fields
    )
    link.requests.add(output.request)
    return link


# Actions


def test_add_annotation_stores_a_box_in_image_coordinates(output, reviewer):
    note = box(output, reviewer)
    note.refresh_from_db()
    assert (note.shape, note.x, note.y, note.width, note.height) == ("box", 0.25, 0.25, 0.5, 0.5)
    assert note.author == reviewer and note.by == "rita"
    assert note.resolved_at is None and note.answered_by is None


def test_add_annotation_gives_a_pin_no_size(output, reviewer):
    note = add_annotation(
        output=output,
        author=reviewer,
        shape="pin",
        x=0.5,
        y=0.5,
        width=0.3,
        height=0.2,
        comment="x",
    )
    assert (note.width, note.height) == (0, 0)


def test_add_annotation_clips_a_box_a_rounding_error_past_the_edge(output, reviewer):
    note = box(output, reviewer, x=0.5, y=0.5, width=0.5 + 1e-9, height=0.5)
    assert note.x + note.width <= 1


@pytest.mark.parametrize(
    ("shape", "place", "comment", "message"),
    [
        ("pin", {"x": -0.1, "y": 0.5}, "c", "The note must be on the image."),
        ("pin", {"x": 0.5, "y": 1.2}, "c", "The note must be on the image."),
        ("pin", {"x": float("nan"), "y": 0.5}, "c", "The note's position is not a number."),
        ("box", {"x": 0.8, "y": 0.1, "width": 0.3, "height": 0.1}, "c", "fit inside the image"),
        ("box", {"x": 0.1, "y": 0.7, "width": 0.1, "height": 0.5}, "c", "fit inside the image"),
        ("box", {"x": 0.1, "y": 0.1, "width": 0, "height": 0.2}, "c", "needs a width and a height"),
        ("circle", {"x": 0.1, "y": 0.1}, "c", "A note is a pin or a box."),
        ("pin", {"x": 0.1, "y": 0.1}, "   ", "Write what the note is about."),
        ("pin", {"x": 0.1, "y": 0.1}, "w" * 2001, "at most 2,000 characters; this one has 2,001"),
    ],
    ids=[
        "left-of-image",
        "below-image",
        "not-a-number",
        "box-past-right-edge",
        "box-past-bottom",
        "box-without-width",
        "unknown-shape",
        "blank-comment",
        "long-comment",
    ],
)
def test_add_annotation_refuses_bad_input(output, reviewer, shape, place, comment, message):
    with pytest.raises(AnnotationRefused, match=message):
        add_annotation(output=output, author=reviewer, shape=shape, comment=comment, **place)
    assert not Annotation.objects.exists()


def test_add_annotation_accepts_a_comment_of_exactly_2000_characters(output, reviewer):
    assert len(pin(output, reviewer, comment="w" * 2000).comment) == 2000


def test_add_annotation_refuses_a_reference(requester, reviewer):
    image_request = request_in_review(requester, mode="edit", variants=1, real_images=False)
    reference = image_request.assets.get(kind=Asset.Kind.REFERENCE)
    with pytest.raises(AnnotationRefused, match="only be put on outputs"):
        pin(reference, reviewer)


def test_add_annotation_refuses_a_requester(output, requester):
    with pytest.raises(AnnotationRefused, match="Only reviewers"):
        pin(output, requester)


def test_add_annotation_needs_exactly_one_writer(output, reviewer):
    link = guest_link(output, reviewer)
    with pytest.raises(AnnotationRefused, match="not both"):
        add_annotation(
            output=output, author=reviewer, guest_link=link, guest_name="Gil", shape="pin",
            x=0.1, y=0.1, comment="c",
        )  # fmt: skip
    with pytest.raises(AnnotationRefused, match="not both"):
        add_annotation(output=output, shape="pin", x=0.1, y=0.1, comment="c")


def test_a_guest_annotates_through_a_link(output, reviewer):
    link = guest_link(output, reviewer)
    note = add_annotation(
        output=output, guest_link=link, guest_name="  Gil Guest ", shape="pin", x=0.2, y=0.3,
        comment="the logo is too small",
    )  # fmt: skip
    assert note.author is None and note.guest_link == link
    assert note.guest_name == "Gil Guest" and note.by == "Gil Guest (guest)"
    assert output_annotations(output)[0].by == "Gil Guest (guest)"


@pytest.mark.parametrize(
    ("fields", "name", "message"),
    [
        ({"revoked_at": timezone.now()}, "Gil", "This link has ended."),
        ({"expires_at": timezone.now() - timedelta(minutes=1)}, "Gil", "This link has ended."),
        ({"may_comment": False}, "Gil", "does not allow notes"),
        ({}, "  ", "Give your name"),
    ],
    ids=["revoked", "expired", "no-comments", "no-name"],
)
def test_a_guest_link_that_does_not_allow_it_refuses_the_note(
    output, reviewer, fields, name, message
):
    link = guest_link(output, reviewer)
    GuestLink.objects.filter(pk=link.pk).update(**fields)
    link.refresh_from_db()
    with pytest.raises(AnnotationRefused, match=message):
        add_annotation(
            output=output, guest_link=link, guest_name=name, shape="pin", x=0.1, y=0.1, comment="c"
        )


def test_a_guest_link_does_not_reach_an_output_it_does_not_share(output, reviewer, requester):
    link = guest_link(output, reviewer)
    other = output_of(requester)
    with pytest.raises(AnnotationRefused, match="does not share"):
        add_annotation(
            output=other, guest_link=link, guest_name="Gil", shape="pin", x=0.1, y=0.1, comment="c"
        )


def test_resolve_and_reopen_a_note(output, reviewer):
    note = box(output, reviewer)
    resolved = resolve_annotation(annotation_id=note.pk, reviewer=reviewer)
    assert resolved.resolved_at and resolved.resolved_by == reviewer
    first = resolved.resolved_at
    assert resolve_annotation(annotation_id=note.pk, reviewer=reviewer).resolved_at == first
    reopened = reopen_annotation(annotation_id=note.pk, reviewer=reviewer)
    note.refresh_from_db()
    assert reopened.resolved_at is None and note.resolved_at is None and note.resolved_by is None


def test_resolving_needs_a_reviewer(output, reviewer, requester):
    note = box(output, reviewer)
    with pytest.raises(AnnotationRefused, match="Only reviewers"):
        resolve_annotation(annotation_id=note.pk, reviewer=requester)
    note.refresh_from_db()
    assert note.resolved_at is None


def test_notes_are_numbered_in_writing_order_and_listed_open_first(output, reviewer):
    first, second, third = (pin(output, reviewer, comment=f"note {n}") for n in (1, 2, 3))
    resolve_annotation(annotation_id=first.pk, reviewer=reviewer)
    notes = annotations_for_request(output.request)[output.pk]
    assert [(note.number, note.comment) for note in notes] == [
        (2, "note 2"),
        (3, "note 3"),
        (1, "note 1"),
    ]
    assert [note.number for note in notes.open] == [2, 3]
    assert [note.number for note in notes.resolved] == [1]


# Words and drawings


def a_note(shape="box", **place) -> Annotation:
    return Annotation(shape=shape, comment="c", **({"width": 0, "height": 0} | place))


@pytest.mark.parametrize(
    ("note", "words"),
    [
        (a_note("pin", x=0.1, y=0.1), "In the upper left"),
        (a_note("pin", x=0.5, y=0.1), "In the upper centre"),
        (a_note("pin", x=0.9, y=0.5), "In the middle right"),
        (a_note("pin", x=0.5, y=0.5), "In the centre"),
        (a_note("pin", x=1.0, y=1.0), "In the lower right"),
        (a_note(x=0.0, y=0.6, width=0.3, height=0.3), "In the lower left"),
        (a_note(x=0.05, y=0.05, width=0.9, height=0.9), "Across the whole image"),
        (a_note(x=0.0, y=0.0, width=1.0, height=0.2), "Across the top"),
        (a_note(x=0.7, y=0.0, width=0.25, height=1.0), "Down the right side"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_region_words_name_where_a_note_is(note, words):
    assert guides.region_words(note) == words


def test_prompt_from_notes_has_a_numbered_line_per_note():
    first = a_note(x=0.0, y=0.0, width=0.2, height=0.2)
    first.comment, first.number = "remove the second lamp post", 1
    second = a_note("pin", x=0.9, y=0.9)
    second.comment, second.number = "Make the sign\nred!", 3
    prompt = guides.prompt_from_notes([first, second], guide=False)
    assert prompt.splitlines()[1:] == [
        "1. In the upper left: remove the second lamp post.",
        "3. In the lower right: Make the sign red!",
    ]
    assert guides.GUIDE_SENTENCE not in prompt
    assert guides.prompt_from_notes([first], guide=True).endswith(guides.GUIDE_SENTENCE)


def pixel(content: bytes, at: tuple[int, int]) -> tuple[int, ...]:
    with Image.open(io.BytesIO(content)) as image:
        return image.convert("RGB").getpixel(at)


def near(colour, expected, tolerance=30) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(colour, expected, strict=True))


def test_the_guide_draws_the_box_and_the_pin_and_leaves_the_rest(output, reviewer):
    box(output, reviewer)  # 100..300 x 75..225 on 400x300
    pin(output, reviewer)  # at 320, 270
    guide = guides.draw_guide(output, output_annotations(output))
    with Image.open(io.BytesIO(guide)) as image:
        assert image.format == "JPEG" and image.size == SIZE
    assert near(pixel(guide, (101, 150)), guides.GUIDE_COLOUR)  # the box's left edge
    assert near(pixel(guide, (298, 150)), guides.GUIDE_COLOUR)  # its right edge
    assert near(pixel(guide, (200, 150)), GREEN)  # inside the box: untouched
    assert near(pixel(guide, (20, 280)), GREEN)  # outside every note
    assert near(pixel(guide, (320, 270)), GREEN)  # the pinned pixel itself stays visible
    assert near(pixel(guide, (320 + 16, 270)), guides.GUIDE_COLOUR)  # the ring round it


# Views


def post_note(client, output, htmx=False, **fields):
    data = {"shape": "box", "x": "0.1", "y": "0.2", "width": "0.3", "height": "0.4"}
    data |= {"comment": "too dark here"} | fields
    headers = {"HX-Request": "true"} if htmx else {}
    return client.post(reverse("output_notes", args=[output.pk]), data, headers=headers)


def test_a_reviewer_adds_a_note_and_goes_back_to_the_page(reviewer_client, output):
    page = reverse("review_detail", args=[output.request_id])
    response = post_note(reviewer_client, output, next=page)
    assert response.status_code == 302 and response["Location"] == page
    note = Annotation.objects.get()
    assert (note.shape, note.x, note.y, note.width, note.height) == ("box", 0.1, 0.2, 0.3, 0.4)


def test_a_note_posted_with_a_foreign_next_goes_to_the_review_page(reviewer_client, output):
    response = post_note(reviewer_client, output, next="https://evil.example/")
    assert response["Location"].startswith(reverse("review_detail", args=[output.request_id]))


def test_htmx_gets_the_outputs_markers_and_list(reviewer_client, output, reviewer):
    pin(output, reviewer, comment="first")
    response = post_note(reviewer_client, output, htmx=True)
    assert response.status_code == 200
    body = response.content.decode()
    note = Annotation.objects.get(comment="too dark here")
    assert f'id="annotation-layer-{output.pk}"' in body
    assert f'id="annotation-list-{output.pk}"' in body
    assert f'class="marker box" data-note="{note.pk}"' in body
    assert 'data-x="0.100000" data-y="0.200000" data-width="0.300000"' in body
    assert "too dark here" in body and "Resolve" in body
    assert f'id="notes-fill-{output.pk}"' in body and "Fill from notes (2)" in body
    assert "<html" not in body


def test_htmx_gets_the_reason_a_note_was_refused(reviewer_client, output):
    response = post_note(reviewer_client, output, htmx=True, x="0.9", width="0.5")
    assert response.status_code == 422
    assert "The box must fit inside the image." in response.content.decode()
    response = post_note(reviewer_client, output, htmx=True, x="abc")
    assert response.status_code == 422 and "Enter a number." in response.content.decode()
    assert not Annotation.objects.exists()


def test_a_refused_note_without_htmx_goes_back_with_a_message(reviewer_client, output):
    response = post_note(reviewer_client, output, comment="", follow=False)
    assert response.status_code == 302
    page = reviewer_client.get(response["Location"]).content.decode()
    assert "Write what the note is about." in page


def test_a_requester_cannot_add_notes_but_sees_them(requester_client, output, reviewer):
    box(output, reviewer)
    assert post_note(requester_client, output).status_code == 403
    assert Annotation.objects.count() == 1
    response = requester_client.get(reverse("output_notes", args=[output.pk]))
    assert response.status_code == 200
    body = response.content.decode()
    assert "remove the second lamp post" in body and "Resolve" not in body


def test_someone_elses_output_notes_are_not_found(output, db):
    stranger = client_for(make_user("sam"))
    assert stranger.get(reverse("output_notes", args=[output.pk])).status_code == 404
    assert post_note(stranger, output).status_code == 404


def test_notes_need_a_login(client, output):
    response = client.get(reverse("output_notes", args=[output.pk]))
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_resolve_and_reopen_views(reviewer_client, output, reviewer):
    note = box(output, reviewer)
    response = reviewer_client.post(
        reverse("resolve_note", args=[note.pk]), headers={"HX-Request": "true"}
    )
    assert response.status_code == 200 and "Reopen" in response.content.decode()
    note.refresh_from_db()
    assert note.resolved_by == reviewer
    response = reviewer_client.post(reverse("reopen_note", args=[note.pk]))
    assert response.status_code == 302
    note.refresh_from_db()
    assert note.resolved_at is None


def test_a_requester_cannot_resolve(requester_client, output, reviewer):
    note = box(output, reviewer)
    assert requester_client.post(reverse("resolve_note", args=[note.pk])).status_code == 403
    note.refresh_from_db()
    assert note.resolved_at is None


def test_resolve_refuses_get(reviewer_client, output, reviewer):
    note = box(output, reviewer)
    assert reviewer_client.get(reverse("resolve_note", args=[note.pk])).status_code == 405


def test_the_review_page_shows_markers_list_and_fill_from_notes(reviewer_client, output, reviewer):
    box(output, reviewer)
    pin(output, reviewer)
    body = reviewer_client.get(reverse("review_detail", args=[output.request_id])).content.decode()
    assert f'data-annotations-url="{reverse("output_notes", args=[output.pk])}"' in body
    assert body.count('class="marker ') == 2
    assert "remove the second lamp post" in body and "this sign is misspelt" in body
    assert "Fill from notes (2)" in body
    assert "1. In the centre: remove the second lamp post." in body
    assert "2. In the lower right: this sign is misspelt." in body
    assert body.count("js/annotations.js") == 1


def test_the_review_page_has_no_fill_button_without_open_notes(reviewer_client, output, reviewer):
    note = box(output, reviewer)
    resolve_annotation(annotation_id=note.pk, reviewer=reviewer)
    body = reviewer_client.get(reverse("review_detail", args=[output.request_id])).content.decode()
    assert 'data-fill-ids="" hidden>' in body and "Show resolved" in body


def test_the_requester_sees_the_notes_on_the_request_page(requester_client, output, reviewer):
    box(output, reviewer)
    body = requester_client.get(reverse("request_detail", args=[output.request_id]))
    body = body.content.decode()
    assert "remove the second lamp post" in body and 'class="marker box"' in body
    assert "Resolve" not in body and "js/annotations.js" in body


# Request changes from notes


def changes_from_notes(client, output, notes, htmx=True, **fields):
    data = CHANGES | {
        "prompt": "Edit this image as the notes say.",
        "edit_from_output": "on",
        "guide_image": "on",
        "annotation_ids": ",".join(str(note.pk) for note in notes),
    }
    headers = {"HX-Request": "true"} if htmx else {}
    url = reverse("request_changes", args=[output.pk])
    return client.post(url, data | fields, headers=headers)


def numbered(output) -> list[Annotation]:
    return sorted(output_annotations(output), key=lambda note: note.number)


def test_request_changes_from_notes_sends_the_output_and_a_guide(reviewer_client, output, reviewer):
    box(output, reviewer)
    pin(output, reviewer)
    notes = numbered(output)
    prompt = guides.prompt_from_notes(notes, guide=True)
    response = changes_from_notes(reviewer_client, output, notes, prompt=prompt)
    assert response.status_code == 200 and response.headers["HX-Redirect"]
    revision = ImageRequest.objects.get(parent=output.request)
    assert revision.mode == "edit"
    assert revision.prompt.splitlines()[1:3] == [
        "1. In the centre: remove the second lamp post.",
        "2. In the lower right: this sign is misspelt.",
    ]
    references = list(revision.assets.filter(kind="reference").order_by("index"))
    assert len(references) == 2
    assert references[0].sha256 == output.sha256 and references[0].file.name == output.file.name
    guide = references[1]
    assert guide.content_type == "image/jpeg" and (guide.width, guide.height) == SIZE
    content = guide.file.read()
    assert near(pixel(content, (101, 150)), guides.GUIDE_COLOUR)
    assert near(pixel(content, (200, 150)), GREEN)
    assert near(pixel(content, (20, 280)), GREEN)
    assert set(Annotation.objects.values_list("answered_by", flat=True)) == {revision.pk}
    decision = Decision.objects.get(verdict="changes")
    assert decision.revision == revision


def test_request_changes_from_notes_without_the_guide(reviewer_client, output, reviewer):
    note = box(output, reviewer)
    changes_from_notes(reviewer_client, output, [note], guide_image="")
    revision = ImageRequest.objects.get(parent=output.request)
    assert list(revision.assets.values_list("sha256", flat=True)) == [output.sha256]
    note.refresh_from_db()
    assert note.answered_by == revision


def test_a_guide_needs_an_edit_of_the_output(reviewer_client, output, reviewer):
    note = box(output, reviewer)
    response = changes_from_notes(reviewer_client, output, [note], edit_from_output="")
    assert response.status_code == 422
    assert "A guide image goes with an edit of this output" in response.content.decode()
    assert not ImageRequest.objects.filter(parent=output.request).exists()


def test_a_note_resolved_meanwhile_stops_the_revision(reviewer_client, output, reviewer):
    first, second = box(output, reviewer), pin(output, reviewer)
    resolve_annotation(annotation_id=second.pk, reviewer=reviewer)
    response = changes_from_notes(reviewer_client, output, [first, second])
    assert response.status_code == 422
    assert "resolved or answered since the page was shown" in response.content.decode()
    assert not ImageRequest.objects.filter(parent=output.request).exists()
    first.refresh_from_db()
    assert first.answered_by is None


def test_notes_of_another_output_are_refused(reviewer_client, output, reviewer, requester):
    other = output_of(requester)
    note = box(other, reviewer)
    response = changes_from_notes(reviewer_client, output, [note])
    assert response.status_code == 422
    assert not ImageRequest.objects.filter(parent=output.request).exists()


def test_bad_note_ids_are_a_form_error(reviewer_client, output, reviewer):
    response = changes_from_notes(reviewer_client, output, [], annotation_ids="1,x")
    assert response.status_code == 422
    assert "not a list of note numbers" in response.content.decode()


def test_the_revision_chain_says_which_notes_a_revision_answered(reviewer_client, output, reviewer):
    box(output, reviewer)
    pin(output, reviewer)
    changes_from_notes(reviewer_client, output, numbered(output))
    revision = ImageRequest.objects.get(parent=output.request)
    body = reviewer_client.get(reverse("review_detail", args=[revision.pk])).content.decode()
    assert "answers 2 notes: 1. remove the second lamp post; 2. this sign is misspelt" in body
    body = reviewer_client.get(reverse("review_detail", args=[output.request_id]))
    assert f'answered by <a href="/review/{revision.pk}/">revision #{revision.pk}</a>' in (
        body.content.decode()
    )


def test_the_guide_image_reaches_the_provider(requester, reviewer, kie, sandbox, settings):
    settings.KIE_CALLBACKS = False
    output = output_of(requester)
    box(output, reviewer)
    revision = actions.request_changes(
        output=output,
        reviewer=reviewer,
        prompt="edit it",
        aspect_ratio="4:3",
        resolution="1K",
        output_format="png",
        variants=1,
        edit_from_output=True,
        annotation_ids=[note.pk for note in output_annotations(output)],
        guide_image=True,
    )
    sent: list[list[str]] = []
    create_task = kie.create_task

    def recording_create_task(**kwargs):
        sent.append(kwargs["image_urls"])
        return create_task(**kwargs)

    kie.create_task = recording_create_task
    generation = revision.generations.get()
    actions.submit_generation(generation_id=generation.pk, client=kie)
    assert len(sent) == 1 and len(sent[0]) == 2
    first, second = (httpx.get(url, timeout=5).content for url in sent[0])
    assert near(pixel(first, (101, 150)), GREEN)  # the output as it is
    assert near(pixel(second, (101, 150)), guides.GUIDE_COLOUR)  # the guide, box drawn
    wait_for(lambda: all(t["state"] in ("success", "fail") for t in sandbox.tasks), timeout=10)
    actions.refresh_generation(generation_id=generation.pk, client=kie)
    actions.store_outputs(generation_id=generation.pk, client=kie)
    generation.refresh_from_db()
    assert generation.state == Generation.State.STORED


def test_a_second_reviewer_sees_anothers_notes(output, reviewer):
    box(output, reviewer)
    other = client_for(make_user("rob", REVIEWERS))
    body = other.get(reverse("review_detail", args=[output.request_id])).content.decode()
    assert "remove the second lamp post" in body and "rita" in body


def test_notes_are_listed_in_the_admin(output, reviewer):
    box(output, reviewer)
    admin = client_for(make_user("root", superuser=True))
    response = admin.get(reverse("admin:imagereview_annotation_changelist"), {"q": "lamp"})
    assert response.status_code == 200
    assert [note.comment for note in response.context["cl"].result_list] == [
        "remove the second lamp post"
    ]


def test_a_reviewer_cannot_revise_their_own_request_from_notes(reviewer, monkeypatch):
    output = output_of(reviewer)
    note = box(output, reviewer)
    monkeypatch.setattr(guides, "draw_guide", lambda *args: pytest.fail("drawn for nothing"))
    with pytest.raises(actions.DecisionRefused, match="someone else has to review it"):
        actions.request_changes(
            output=output, reviewer=reviewer, prompt="p", aspect_ratio="1:1", resolution="1K",
            output_format="png", variants=1, edit_from_output=True, annotation_ids=[note.pk],
            guide_image=True,
        )  # fmt: skip
    note.refresh_from_db()
    assert note.answered_by is None
    assert not ImageRequest.objects.filter(parent=output.request).exists()
