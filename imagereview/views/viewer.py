"""The full-size viewer: one output alone on the screen, at any zoom up to 800% of its true
pixels, stepping through the variants and revisions of its request, compared A/B."""

from dataclasses import dataclass

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET

from imagereview.models import Asset, ImageRequest
from imagereview.queries.annotations import attach_notes
from imagereview.queries.revisions import revision_chain
from imagereview.roles import is_reviewer


@dataclass(frozen=True)
class Choice:
    """An image the output can be compared with: a group in the chooser and a label."""

    group: str
    label: str
    asset: Asset


def _outputs_of(requests: list[ImageRequest]) -> dict[int, list[Asset]]:
    """Each request's outputs, in the order the review page shows them."""
    outputs: dict[int, list[Asset]] = {version.pk: [] for version in requests}
    queryset = (
        Asset.objects.filter(kind=Asset.Kind.OUTPUT, request__in=requests)
        .select_related("generation")
        .order_by("generation__variant", "generation_id", "index")
    )
    for output in queryset:
        outputs[output.request_id].append(output)
    return outputs


def _viewer_url(output: Asset | None) -> str:
    return reverse("view_output", args=[output.pk]) if output else ""


def _variant_label(output: Asset) -> str:
    variant = output.generation.variant if output.generation else output.index + 1
    return f"Variant {variant}"


@login_required
@require_GET
def view_output(request: HttpRequest, output_id: int) -> HttpResponse:
    output = get_object_or_404(
        Asset.objects.select_related("request__requester", "generation"),
        pk=output_id,
        kind=Asset.Kind.OUTPUT,
    )
    image_request = output.request
    reviewer = is_reviewer(request.user)
    if image_request.requester_id != request.user.pk and not reviewer:
        raise Http404("No such image.")
    # A requester steps only through the versions that are theirs, as asset_file lets them.
    chain = [
        version
        for version in revision_chain(image_request)
        if reviewer or version.requester_id == request.user.pk
    ]
    outputs = _outputs_of(chain)
    siblings = outputs[image_request.pk]
    position = next(i for i, sibling in enumerate(siblings) if sibling.pk == output.pk)
    here = next(i for i, version in enumerate(chain) if version.pk == image_request.pk)

    def same_place(versions: list[ImageRequest]) -> Asset | None:
        """The output at this position in the first of `versions` that has outputs."""
        for version in versions:
            if outputs[version.pk]:
                return outputs[version.pk][min(position, len(outputs[version.pk]) - 1)]
        return None

    references = list(image_request.assets.filter(kind=Asset.Kind.REFERENCE).order_by("index"))
    choices = [
        Choice("Variants", _variant_label(sibling), sibling)
        for sibling in siblings
        if sibling.pk != output.pk
    ]
    choices += [
        Choice("References", f"Reference {n}", reference)
        for n, reference in enumerate(references, start=1)
    ]
    choices += [
        Choice("Revisions", f"v{version.revision} · {_variant_label(other)}", other)
        for version in chain
        if version.pk != image_request.pk
        for other in outputs[version.pk]
    ]
    back = (
        reverse("review_detail", args=[image_request.pk])
        if reviewer
        else image_request.get_absolute_url()
    )
    attach_notes([output])
    context = {
        "output": output,
        "image_request": image_request,
        "may_annotate": reviewer,
        "label": _variant_label(output),
        "position": position + 1,
        "count": len(siblings),
        "back_url": f"{back}#output-{output.pk}",
        "previous_variant": _viewer_url(siblings[position - 1] if len(siblings) > 1 else None),
        "next_variant": _viewer_url(
            siblings[(position + 1) % len(siblings)] if len(siblings) > 1 else None
        ),
        "previous_revision": _viewer_url(same_place(list(reversed(chain[:here])))),
        "next_revision": _viewer_url(same_place(chain[here + 1 :])),
        "choices": choices,
        "default_choice": choices[0].asset.pk if choices else "",
    }
    return render(request, "review/viewer.html", context)
