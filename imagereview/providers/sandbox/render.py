"""Draw the sandbox's output images with Pillow."""

import hashlib
import io
import math
import random
from functools import cache

from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

SIZES_1K: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "16:9": (1376, 768),
    "9:16": (768, 1376),
    "4:3": (1200, 896),
    "3:4": (896, 1200),
    "3:2": (1264, 848),
    "2:3": (848, 1264),
    "5:4": (1152, 928),
    "4:5": (928, 1152),
    "21:9": (1584, 672),
}
SCALE = {"1K": 1, "2K": 2, "4K": 4}
CONTENT_TYPES = {"png": "image/png", "jpg": "image/jpeg"}
BAND_TEXT_CHARS = 60
# Detail is drawn at a quarter of the output size and then enlarged, as a camera's optics
# soften what its sensor records; the octaves are the sizes of its features at that scale.
PHOTO_DETAIL_SCALE = 4
PHOTO_OCTAVES = (16, 4, 2)
PHOTO_TEXTURE_WEIGHT = 0.6


class BadReference(Exception):
    """The reference image cannot be used for an edit."""


def output_size(
    aspect_ratio: str, resolution: str, reference_size: tuple[int, int] | None = None
) -> tuple[int, int]:
    """Return the pixel size the model would answer for these parameters."""
    if aspect_ratio == "auto":
        aspect_ratio = nearest_ratio(reference_size) if reference_size else "1:1"
    width, height = SIZES_1K[aspect_ratio]
    scale = SCALE[resolution]
    return width * scale, height * scale


def nearest_ratio(size: tuple[int, int]) -> str:
    # Compare in log space so 2:1 and 1:2 are equally far from 1:1.
    target = math.log(size[0] / size[1])
    return min(SIZES_1K, key=lambda r: abs(math.log(SIZES_1K[r][0] / SIZES_1K[r][1]) - target))


def render(
    prompt: str,
    *,
    aspect_ratio: str = "1:1",
    resolution: str = "1K",
    output_format: str = "png",
    reference: bytes | None = None,
    variation: int = 0,
    texture: str = "flat",
) -> bytes:
    """Render a prompt-only picture, or an edit of `reference` when it is given.

    The picture is a function of the prompt and `variation` (the n-th task for that prompt).
    With `texture="photo"` a prompt-only picture has the detail, and the file weight, of a
    photograph; it takes seconds at 4K.
    """
    seed = hashlib.sha256(f"{prompt}\x00{variation}".encode() if variation else prompt.encode())
    if reference is None:
        size = output_size(aspect_ratio, resolution)
        if texture == "photo":
            image = _draw_photo(seed.digest(), size)
            _draw_band(image, prompt)
        else:
            image = _draw_prompt(prompt, seed.digest(), size)
    else:
        source = open_reference(reference)
        size = output_size(aspect_ratio, resolution, source.size)
        image = _transform(source, prompt, seed.digest(), size)
    return encode(image, output_format)


def open_reference(data: bytes) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        if image.format not in {"JPEG", "PNG", "WEBP"}:
            raise BadReference(f"unsupported reference image format {image.format}")
        image.load()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise BadReference(f"reference image could not be decoded: {exc}") from exc
    return ImageOps.exif_transpose(image).convert("RGB")


def encode(image: Image.Image, output_format: str) -> bytes:
    buffer = io.BytesIO()
    if output_format == "jpg":
        image.convert("RGB").save(buffer, "JPEG", quality=90)
    else:
        # Level 1 keeps 4K encodes around a second; the size cost is fine for a sandbox.
        image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def _draw_photo(seed: bytes, size: tuple[int, int]) -> Image.Image:
    """Draw shapes under detail at every scale, as a photograph has.

    Real outputs are photographs whose PNGs weigh 15-25 MB at 4K; a flat drawing weighs
    under 1 MB, which hides the cost of downloading, hashing and storing them.
    """
    width, height = size
    detail_size = (max(1, width // PHOTO_DETAIL_SCALE), max(1, height // PHOTO_DETAIL_SCALE))
    composition = _draw_shapes(seed, detail_size)
    rng = random.Random(seed)
    texture = None
    for octave, scale in enumerate(PHOTO_OCTAVES):
        noise_size = (max(2, detail_size[0] // scale), max(2, detail_size[1] // scale))
        layer = Image.merge(
            "RGB",
            [
                Image.frombytes("L", noise_size, rng.randbytes(noise_size[0] * noise_size[1]))
                for _ in range(3)
            ],
        ).resize(detail_size, Image.BICUBIC)
        texture = layer if texture is None else Image.blend(texture, layer, 0.5 / (octave + 1))
    texture = ImageOps.autocontrast(texture, cutoff=1)
    picture = Image.blend(composition, texture, PHOTO_TEXTURE_WEIGHT)
    return picture.resize(size, Image.BICUBIC)


def _palette(seed: bytes) -> list[tuple[int, int, int]]:
    return [(seed[i], seed[i + 1], seed[i + 2]) for i in range(0, 30, 3)]


def _draw_prompt(prompt: str, seed: bytes, size: tuple[int, int]) -> Image.Image:
    image = _draw_shapes(seed, size)
    _draw_band(image, prompt)
    return image


def _draw_shapes(seed: bytes, size: tuple[int, int]) -> Image.Image:
    """Draw a gradient, a glow and six shapes, all chosen by `seed`."""
    colours = _palette(seed)
    width, height = size

    gradient = Image.linear_gradient("L").rotate(seed[30] % 4 * 90)
    background = ImageOps.colorize(gradient, colours[0], colours[1]).resize(size, Image.BILINEAR)
    glow = ImageOps.colorize(Image.radial_gradient("L"), colours[2], (0, 0, 0))
    glow = glow.resize(size, Image.BILINEAR)
    image = Image.blend(background, glow, 0.35)

    draw = ImageDraw.Draw(image)
    unit = min(width, height)
    for index in range(6):
        byte = seed[index * 5 : index * 5 + 5]
        x = byte[0] * width // 255
        y = byte[1] * height // 255
        radius = unit // 12 + byte[2] * unit // 1024
        box = (x - radius, y - radius, x + radius, y + radius)
        colour = colours[3 + index % 7]
        match byte[3] % 3:
            case 0:
                draw.ellipse(box, fill=colour)
            case 1:
                draw.rectangle(box, fill=colour)
            case _:
                draw.regular_polygon((x, y, radius), 3 + byte[4] % 4, fill=colour)
    return image


def _transform(source: Image.Image, prompt: str, seed: bytes, size: tuple[int, int]) -> Image.Image:
    fitted = ImageOps.fit(source, size, Image.BICUBIC)
    red, green, blue = ImageOps.posterize(ImageOps.mirror(fitted), 3).split()
    shifted = Image.merge("RGB", (blue, red, green))
    tint = Image.new("RGB", size, _palette(seed)[0])
    image = Image.blend(shifted, tint, 0.25)
    # At the top, so the band a generated reference carries at the bottom stays apart.
    _draw_band(image, prompt, at_top=True)
    return image


def _draw_band(image: Image.Image, prompt: str, *, at_top: bool = False) -> None:
    width, height = image.size
    band_height = max(24, height // 12)
    top = band_height if at_top else height - band_height * 2
    overlay = Image.new("L", (width, band_height), 150)
    image.paste((0, 0, 0), (0, top, width, top + band_height), overlay)
    text = " ".join(prompt.split())
    if len(text) > BAND_TEXT_CHARS:
        text = text[: BAND_TEXT_CHARS - 1] + "…"
    font = _fit_font(text, band_height * 11 // 20, width - band_height)
    ImageDraw.Draw(image).text(
        (band_height // 2, top + band_height // 2), text, fill="white", font=font, anchor="lm"
    )


def _fit_font(text: str, size: int, room: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    font = _font(size)
    length = font.getlength(text)
    if length <= room or not isinstance(font, ImageFont.FreeTypeFont):
        return font
    return _font(max(8, int(size * room / length)))


@cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except ImportError:
        return ImageFont.load_default()
