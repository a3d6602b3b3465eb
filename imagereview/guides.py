"""Notes on an output turned into what a revision is given: words for its prompt, and a copy
of the output with the notes drawn in (the guide image sent beside it as a reference).
"""

import io
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

from imagereview.models import Annotation, Asset

# A box covering this share of the image is about the whole picture, not a place in it.
WHOLE_IMAGE = 0.6
# A box this wide (or tall) runs across the image (or down it).
SPANNING = 0.8
ROWS = ("upper", "middle", "lower")
COLUMNS = ("left", "centre", "right")
EDGES = ("top", "middle", "bottom")
GUIDE_COLOUR = (235, 20, 60)
GUIDE_TEXT = (255, 255, 255)
GUIDE_QUALITY = 90

GUIDE_SENTENCE = (
    "The second image is a copy of this one with each place outlined and numbered in red: "
    "use it only to find the places, and do not draw the outlines or the numbers."
)


def region_words(note: Annotation) -> str:
    """Where a note is, as a person says it: "In the upper left", "Across the whole image"."""
    is_box = note.shape == Annotation.Shape.BOX
    if is_box and note.width * note.height >= WHOLE_IMAGE:
        return "Across the whole image"
    centre_x = note.x + (note.width / 2 if is_box else 0)
    centre_y = note.y + (note.height / 2 if is_box else 0)
    column = min(2, int(centre_x * 3))
    row = min(2, int(centre_y * 3))
    if is_box and note.width >= SPANNING:
        return "Across the middle" if row == 1 else f"Across the {EDGES[row]}"
    if is_box and note.height >= SPANNING:
        return "Down the centre" if column == 1 else f"Down the {COLUMNS[column]} side"
    if (row, column) == (1, 1):
        return "In the centre"
    return f"In the {ROWS[row]} {COLUMNS[column]}"


def note_line(note: Annotation) -> str:
    """One numbered line of a revision's prompt: "1. In the upper left: remove the lamp."."""
    text = " ".join(note.comment.split())
    if text and text[-1] not in ".!?":
        text += "."
    return f"{note.number}. {region_words(note)}: {text}"


def prompt_from_notes(notes: Sequence[Annotation], *, guide: bool) -> str:
    """The whole edit instruction for a revision that edits the output the notes are on."""
    lines = [
        "Edit this image. Change only what the notes ask, and keep everything else as it is:",
        *(note_line(note) for note in notes),
    ]
    if guide:
        lines.append(GUIDE_SENTENCE)
    return "\n".join(lines)


def draw_guide(output: Asset, notes: Sequence[Annotation]) -> bytes:
    """A JPEG copy of the output, at its size, with each note's box or pin and number drawn."""
    with output.file.open("rb") as stored, Image.open(stored) as original:
        image = original.convert("RGB")
    width, height = image.size
    long_side = max(width, height)
    line = max(3, round(long_side / 400))
    radius = max(14, round(long_side / 60))
    font = ImageFont.load_default(size=round(radius * 1.3))
    draw = ImageDraw.Draw(image)
    for note in notes:
        x, y = note.x * width, note.y * height
        if note.shape == Annotation.Shape.BOX:
            right = min(width - 1, x + note.width * width)
            bottom = min(height - 1, y + note.height * height)
            draw.rectangle((x, y, right, bottom), outline=GUIDE_COLOUR, width=line)
            label = (x + radius + line, y + radius + line)
        else:
            ring = radius * 1.2
            draw.ellipse((x - ring, y - ring, x + ring, y + ring), outline=GUIDE_COLOUR, width=line)
            label = (x + ring + radius, y - ring - radius)
        _number(draw, label, radius, str(note.number), font, (width, height))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=GUIDE_QUALITY, subsampling=0)
    return out.getvalue()


def _number(
    draw: ImageDraw.ImageDraw,
    centre: tuple[float, float],
    radius: int,
    text: str,
    font: ImageFont.FreeTypeFont,
    size: tuple[int, int],
) -> None:
    """A filled disc with the note's number, kept inside the image."""
    x = min(max(centre[0], radius), size[0] - radius)
    y = min(max(centre[1], radius), size[1] - radius)
    draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=GUIDE_COLOUR)
    draw.text((x, y), text, fill=GUIDE_TEXT, font=font, anchor="mm")
