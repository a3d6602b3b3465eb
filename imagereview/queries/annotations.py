"""Notes on outputs, numbered as their markers show them, for every page that shows them.

The review page, the request page, the full-size viewer and the guest page all list an
output's notes through `annotations_by_output`, so a note keeps one number everywhere: its
place among the output's notes in the order they were written.
"""

from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence

from imagereview import guides
from imagereview.models import Annotation, Asset, ImageRequest


class Notes(list):
    """An output's notes, open ones first, each with its `number`."""

    @property
    def open(self) -> list[Annotation]:
        return sorted((n for n in self if n.resolved_at is None), key=lambda n: n.number)

    @property
    def resolved(self) -> list[Annotation]:
        return [note for note in self if note.resolved_at is not None]


def annotations_by_output(output_ids: Iterable[int]) -> dict[int, Notes]:
    """Each output's notes, open ones first, each with its `number` (1, 2 ...)."""
    rows = (
        Annotation.objects.filter(output_id__in=list(output_ids))
        .select_related("author", "resolved_by")
        .order_by("output_id", "created_at", "id")
    )
    notes: dict[int, list[Annotation]] = defaultdict(list)
    for annotation in rows:
        annotation.number = len(notes[annotation.output_id]) + 1
        notes[annotation.output_id].append(annotation)
    return {
        output_id: Notes(sorted(items, key=lambda note: note.resolved_at is not None))
        for output_id, items in notes.items()
    }


def annotations_for_request(image_request: ImageRequest) -> dict[int, Notes]:
    """The notes on each output of a request."""
    outputs = image_request.assets.filter(kind=Asset.Kind.OUTPUT).values_list("pk", flat=True)
    return annotations_by_output(outputs)


def output_annotations(output: Asset) -> Notes:
    return annotations_by_output([output.pk]).get(output.pk, Notes())


def attach_notes(outputs: Sequence[Asset]) -> None:
    """Set `notes` on each output, and what "Fill from notes" puts into a revision:
    `fill_prompt` (and `fill_prompt_with_guide`) from the open notes, `fill_ids` theirs."""
    notes = annotations_by_output(output.pk for output in outputs)
    for output in outputs:
        output.notes = notes.get(output.pk, Notes())
        to_answer = [note for note in output.notes.open if not note.answered_by_id]
        output.fill_ids = ",".join(str(note.pk) for note in to_answer)
        output.fill_count = len(to_answer)
        output.fill_prompt = guides.prompt_from_notes(to_answer, guide=False)
        output.fill_prompt_with_guide = guides.prompt_from_notes(to_answer, guide=True)


def attach_answered(versions: list[dict]) -> list[dict]:
    """Add to each version of a revision chain the notes it was asked to answer."""
    answered = answered_by_revisions({version["request"].pk for version in versions})
    for version in versions:
        version["answered"] = answered.get(version["request"].pk, [])
    return versions


def answered_by_revisions(revision_ids: Collection[int]) -> dict[int, list[Annotation]]:
    """The notes each revision was asked to answer, numbered as on their output."""
    outputs = set(
        Annotation.objects.filter(answered_by_id__in=list(revision_ids)).values_list(
            "output_id", flat=True
        )
    )
    answered: dict[int, list[Annotation]] = defaultdict(list)
    for notes in annotations_by_output(outputs).values():
        for note in sorted(notes, key=lambda n: n.number):
            if note.answered_by_id in revision_ids:
                answered[note.answered_by_id].append(note)
    return dict(answered)
