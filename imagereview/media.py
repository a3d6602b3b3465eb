"""Image files: decoding and verification, hashing, thumbnails and previews (Pillow)."""

import hashlib
import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO

from PIL import Image, UnidentifiedImageError

FORMAT_CONTENT_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
FORMAT_EXTENSIONS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}
FORMAT_NAMES = {"PNG": "PNG", "JPEG": "JPEG", "WEBP": "WebP"}
# Decoding a bigger image is refused, whatever its file size (decompression bombs).
MAX_PIXELS = 80_000_000

# What the provider accepts as image_input.
REFERENCE_FORMATS = ("JPEG", "PNG", "WEBP")
OUTPUT_FORMATS = ("PNG", "JPEG", "WEBP")
MAX_REFERENCES = 8
MAX_REFERENCE_BYTES = 30 * 1024 * 1024
# Over twice the pixels of a 4K output, while one decoded as RGBA takes at most 160 MB.
MAX_REFERENCE_PIXELS = 40_000_000

# The rendition shown on screen: its long side, and its WebP quality and effort. Method 2
# encodes a 2048 px photograph in about 0.15 s (method 4: 0.3 s, JPEG q90: 0.02 s but 40%
# larger), next to the 0.5 s that decoding the 4K original takes anyway.
PREVIEW_SIZE = 2048
PREVIEW_QUALITY = 88
PREVIEW_METHOD = 2

# Modes that shrink well as they are; others are converted to RGB before shrinking.
_SHRINKABLE_MODES = ("RGB", "RGBA", "L", "LA")

# What Pillow raises for a file it cannot identify or decode, truncated or corrupt.
_DECODING_ERRORS = (OSError, SyntaxError, ValueError, EOFError)


class BadImage(Exception):
    pass


@dataclass(frozen=True)
class ImageFacts:
    sha256: str
    bytes: int
    width: int
    height: int
    format: str

    @property
    def content_type(self) -> str:
        return FORMAT_CONTENT_TYPES[self.format]

    @property
    def extension(self) -> str:
        return FORMAT_EXTENSIONS[self.format]

    def asset_fields(self) -> dict[str, str | int]:
        """The columns of an `Asset` that these facts fill."""
        return {
            "sha256": self.sha256,
            "bytes": self.bytes,
            "width": self.width,
            "height": self.height,
            "content_type": self.content_type,
        }


@contextmanager
def _open_image(
    stream: IO[bytes], *, formats: tuple[str, ...], max_pixels: int
) -> Iterator[Image.Image]:
    """Open an image of one of `formats`, refusing it before decoding if it is too large.

    Errors from decoding it inside the `with` block are raised as BadImage too.
    """
    stream.seek(0)
    try:
        # Pillow only warns between its limit and twice that; a warning must refuse too.
        # (Our caps are lower, so a filter lost to another thread changes no outcome.)
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # Only the accepted formats' parsers ever see the bytes; the type comes from
            # the content alone.
            with Image.open(stream, formats=formats) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise BadImage(
                        f"the image is {width:,}×{height:,} pixels, "
                        f"over the limit of {max_pixels:,} pixels"
                    )
                yield image
    except UnidentifiedImageError as error:
        raise BadImage(f"the file is not a readable {_format_list(formats)} image") from error
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise BadImage("the image has too many pixels to decode safely") from error
    except _DECODING_ERRORS as error:
        raise BadImage(f"the image is damaged or incomplete: {error}") from error
    finally:
        stream.seek(0)


def _format_list(formats: tuple[str, ...]) -> str:
    *rest, last = [FORMAT_NAMES.get(kind, kind) for kind in formats]
    return f"{', '.join(rest)} or {last}" if rest else last


def _kind(image: Image.Image) -> str:
    """The image's format by its content; a multi-picture JPEG (as many phones write) is a
    JPEG to everyone but Pillow."""
    return "JPEG" if image.format == "MPO" else image.format or ""


def inspect_image(
    stream: IO[bytes],
    *,
    allowed_formats: tuple[str, ...] = OUTPUT_FORMATS,
    max_pixels: int = MAX_PIXELS,
) -> ImageFacts:
    """Identify an image by its content, decode all of it, and hash it.

    Decoding proves the file whole (a truncated or corrupt one is refused). A JPEG is
    decoded at an eighth of its size, which still reads every byte of it: a 4K one then
    takes a megabyte of memory instead of 64.
    """
    with _open_image(stream, formats=allowed_formats, max_pixels=max_pixels) as image:
        kind = _kind(image)
        width, height = image.size
        image.draft(None, (1, 1))
        image.load()
    sha256, size = digest(stream)
    stream.seek(0)
    return ImageFacts(sha256=sha256, bytes=size, width=width, height=height, format=kind)


def digest(stream: IO[bytes]) -> tuple[str, int]:
    """The sha256 and size of what is left in a stream, read a megabyte at a time."""
    hashed = hashlib.sha256()
    size = 0
    for chunk in iter(lambda: stream.read(1024 * 1024), b""):
        hashed.update(chunk)
        size += len(chunk)
    return hashed.hexdigest(), size


def validate_reference(upload: IO[bytes], *, name: str) -> ImageFacts:
    """Check that an uploaded file can be given to the provider as a reference image.

    Raise BadImage with a message that names the file, fit to show next to it in a form.
    """
    size = upload.seek(0, io.SEEK_END)
    upload.seek(0)
    if size > MAX_REFERENCE_BYTES:
        raise BadImage(
            f"{name}: the file is {size / 1024 / 1024:.1f} MB, "
            f"over the limit of {MAX_REFERENCE_BYTES // 1024 // 1024} MB."
        )
    try:
        return inspect_image(
            upload, allowed_formats=REFERENCE_FORMATS, max_pixels=MAX_REFERENCE_PIXELS
        )
    except BadImage as error:
        raise BadImage(f"{name}: {error}.") from error


def make_thumbnail(stream: IO[bytes], *, size: int) -> bytes:
    """A JPEG thumbnail that fits in a `size` square."""
    return jpeg_thumbnail(reduced_image(stream, size=size))


def jpeg_thumbnail(image: Image.Image) -> bytes:
    """An image already shrunk to thumbnail size, as the JPEG file kept beside its original."""
    out = io.BytesIO()
    image.save(out, "JPEG", quality=82, optimize=True)
    return out.getvalue()


def webp_preview(image: Image.Image) -> bytes:
    """An image already shrunk to preview size, as the WebP file kept beside its original."""
    out = io.BytesIO()
    image.save(out, "WEBP", quality=PREVIEW_QUALITY, method=PREVIEW_METHOD)
    return out.getvalue()


def renditions(
    stream: IO[bytes], *, size: int, preview_size: int = 0, max_pixels: int = MAX_PIXELS
) -> tuple[Image.Image, Image.Image | None]:
    """The image shrunk to fit a `size` square and, when its long side is over
    `preview_size`, to fit a `preview_size` square too, from one decode.

    The small one is made from the preview, so memory still holds one full decoded copy at
    most. An image that fits the preview size has no preview: it is shown as it is.
    """
    with _open_image(stream, formats=tuple(FORMAT_NAMES), max_pixels=max_pixels) as image:
        long_side = max(image.size)
    if not preview_size or long_side <= preview_size:
        return reduced_image(stream, size=size, max_pixels=max_pixels), None
    preview = reduced_image(stream, size=preview_size, max_pixels=max_pixels)
    small = preview.copy()
    small.thumbnail((size, size))
    return small, preview


def inspect_output(
    stream: IO[bytes], *, size: int, preview_size: int = 0
) -> tuple[ImageFacts, Image.Image, Image.Image | None]:
    """Identify and hash a provider's output, and shrink it to fit a `size` square (and a
    `preview_size` one, see `renditions`), from one decode: the image that proves the file
    whole is the one the thumbnail, the preview and the checks are made from (decoding a 4K
    PNG costs more than everything else its storing does)."""
    with _open_image(stream, formats=OUTPUT_FORMATS, max_pixels=MAX_PIXELS) as image:
        kind = _kind(image)
        width, height = image.size
    reduced, preview = renditions(stream, size=size, preview_size=preview_size)
    sha256, bytes_read = digest(stream)
    stream.seek(0)
    facts = ImageFacts(sha256=sha256, bytes=bytes_read, width=width, height=height, format=kind)
    return facts, reduced, preview


def reduced_image(stream: IO[bytes], *, size: int, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """The image shrunk to fit in a `size` square, in RGB, decoded and apart from the file.

    Memory holds one full decoded copy at most, for as long as shrinking takes: shrinking
    comes before converting (a 4K RGB image takes 64 MB; a second copy would double it),
    and a JPEG is decoded straight at the smallest scale that still covers `size`.
    """
    with _open_image(stream, formats=tuple(FORMAT_NAMES), max_pixels=max_pixels) as image:
        image.draft("RGB", (size, size))
        if image.mode not in _SHRINKABLE_MODES:
            # Palette and bit-depth modes resample badly or not at all: convert them first.
            image = image.convert("RGB")
        image.thumbnail((size, size))
        return image.convert("RGB")
