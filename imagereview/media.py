"""Image files: decoding and verification, hashing, thumbnails (Pillow)."""

import hashlib
import io
from dataclasses import dataclass
from typing import IO

from PIL import Image, UnidentifiedImageError

FORMAT_CONTENT_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
FORMAT_EXTENSIONS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}
# Decoding a bigger image is refused, whatever its file size (decompression bombs).
MAX_PIXELS = 80_000_000


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


def inspect_image(
    stream: IO[bytes], *, allowed_formats: tuple[str, ...] = ("PNG", "JPEG", "WEBP")
) -> ImageFacts:
    """Identify an image by its content, decode it fully, and hash it."""
    stream.seek(0)
    digest = hashlib.sha256()
    size = 0
    for chunk in iter(lambda: stream.read(1024 * 1024), b""):
        digest.update(chunk)
        size += len(chunk)
    stream.seek(0)
    try:
        with Image.open(stream) as image:
            kind = image.format or ""
            if kind not in allowed_formats:
                raise BadImage(f"{kind or 'unknown'} is not an accepted image type")
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise BadImage(f"{width}x{height} is over the {MAX_PIXELS:,} pixel limit")
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as error:
        raise BadImage(f"not a readable image: {error}") from error
    finally:
        stream.seek(0)
    return ImageFacts(
        sha256=digest.hexdigest(), bytes=size, width=width, height=height, format=kind
    )


def make_thumbnail(stream: IO[bytes], *, size: int) -> bytes:
    """A JPEG thumbnail that fits in a `size` square."""
    stream.seek(0)
    with Image.open(stream) as image:
        image.draft("RGB", (size, size))
        image = image.convert("RGB")
        image.thumbnail((size, size))
        out = io.BytesIO()
        image.save(out, "JPEG", quality=82, optimize=True)
    stream.seek(0)
    return out.getvalue()
