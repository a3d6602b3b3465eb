import hashlib
import io
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image, ImageFile

from imagereview import media
from imagereview.media import (
    MAX_REFERENCE_BYTES,
    MAX_REFERENCE_PIXELS,
    BadImage,
    inspect_image,
    make_thumbnail,
    validate_reference,
)


def image_bytes(kind: str, size: tuple[int, int] = (64, 48), **options: object) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 80, 40)).save(out, kind, **options)
    return out.getvalue()


def png_declaring(width: int, height: int, *, pixels: bool = False) -> bytes:
    """A 1-bit greyscale PNG whose header declares `width` x `height`.

    With `pixels`, it carries real (all black) rows, so it would decode if let through;
    without, only the header is sound.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    rows = bytes(height * (1 + (width + 7) // 8)) if pixels else b""
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def load(self: ImageFile.ImageFile) -> None:
        pytest.fail("the image was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)


@pytest.mark.parametrize(
    ("kind", "name", "content_type"),
    [
        ("JPEG", "photo.jpg", "image/jpeg"),
        ("PNG", "drawing.png", "image/png"),
        ("WEBP", "shot.webp", "image/webp"),
    ],
)
def test_validate_reference_accepts_jpeg_png_and_webp(
    kind: str, name: str, content_type: str
) -> None:
    data = image_bytes(kind)
    upload = io.BytesIO(data)

    facts = validate_reference(upload, name=name)

    assert (facts.format, facts.width, facts.height) == (kind, 64, 48)
    assert facts.content_type == content_type
    assert facts.bytes == len(data)
    assert facts.sha256 == hashlib.sha256(data).hexdigest()
    assert upload.tell() == 0


def test_validate_reference_judges_the_type_by_content_not_name() -> None:
    facts = validate_reference(io.BytesIO(image_bytes("JPEG")), name="really-a-jpeg.png")

    assert facts.format == "JPEG"


def test_validate_reference_takes_a_multi_picture_jpeg_as_jpeg() -> None:
    out = io.BytesIO()
    first, second = Image.new("RGB", (32, 32), "red"), Image.new("RGB", (32, 32), "blue")
    first.save(out, "MPO", save_all=True, append_images=[second])

    facts = validate_reference(out, name="phone.jpg")

    assert (facts.format, facts.content_type) == ("JPEG", "image/jpeg")


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"just some words, not a picture\n" * 20, id="text"),
        pytest.param(image_bytes("GIF"), id="gif"),
        pytest.param(image_bytes("BMP"), id="bmp"),
        pytest.param(b"", id="empty"),
    ],
)
def test_validate_reference_refuses_another_type_renamed_to_png(data: bytes) -> None:
    with pytest.raises(BadImage) as caught:
        validate_reference(io.BytesIO(data), name="holiday.png")

    assert str(caught.value) == "holiday.png: the file is not a readable JPEG, PNG or WebP image."


def sparse_file(path: Path, data: bytes, size: int) -> io.BufferedReader:
    """`data` padded with zeros to `size` bytes, without writing or holding the padding."""
    with path.open("wb") as out:
        out.write(data)
        out.truncate(size)
    return path.open("rb")


def test_validate_reference_refuses_a_file_over_30_mb_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Image, "open", pytest.fail)

    upload = sparse_file(tmp_path / "big.png", image_bytes("PNG"), MAX_REFERENCE_BYTES + 1)

    with upload, pytest.raises(BadImage) as caught:
        validate_reference(upload, name="big.png")

    assert str(caught.value) == "big.png: the file is 30.0 MB, over the limit of 30 MB."


def test_validate_reference_accepts_a_file_of_exactly_30_mb(tmp_path: Path) -> None:
    with sparse_file(tmp_path / "padded.png", image_bytes("PNG"), MAX_REFERENCE_BYTES) as upload:
        facts = validate_reference(upload, name="padded.png")

    assert facts.bytes == MAX_REFERENCE_BYTES == 30 * 1024 * 1024


def test_validate_reference_refuses_too_many_pixels_before_decoding(no_decoding: None) -> None:
    data = png_declaring(8000, 8000, pixels=True)
    assert len(data) < 50_000 and MAX_REFERENCE_PIXELS < 8000 * 8000

    with pytest.raises(BadImage) as caught:
        validate_reference(io.BytesIO(data), name="bomb.png")

    assert str(caught.value) == (
        "bomb.png: the image is 8,000×8,000 pixels, over the limit of 40,000,000 pixels."
    )


@pytest.mark.parametrize("side", [10_000, 20_000, 100_000])
def test_validate_reference_turns_pillows_bomb_check_into_bad_image(
    side: int, no_decoding: None, recwarn: pytest.WarningsRecorder
) -> None:
    with pytest.raises(BadImage, match="^bomb.png: the image has too many pixels"):
        validate_reference(io.BytesIO(png_declaring(side, side)), name="bomb.png")

    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


def damaged(kind: str) -> bytes:
    data = image_bytes(kind, (256, 256), **({"quality": 95} if kind != "PNG" else {}))
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(damaged("PNG"), id="truncated-png"),
        pytest.param(damaged("JPEG"), id="truncated-jpeg"),
        pytest.param(damaged("WEBP"), id="truncated-webp"),
        pytest.param(png_declaring(64, 64)[:40], id="png-header-only"),
        pytest.param(b"\x89PNG\r\n\x1a\n" + b"\xff" * 200, id="png-signature-then-junk"),
        pytest.param(b"\xff\xd8\xff" + b"\x00" * 200, id="jpeg-marker-then-zeros"),
        pytest.param(png_declaring(64, 64), id="png-without-pixels"),
    ],
)
def test_validate_reference_refuses_a_damaged_file(data: bytes) -> None:
    with pytest.raises(BadImage, match=r"^broken\.png: the ") as caught:
        validate_reference(io.BytesIO(data), name="broken.png")

    assert "not a readable" in str(caught.value) or "damaged or incomplete" in str(caught.value)


def test_inspect_image_accepts_more_pixels_than_a_reference_may_have() -> None:
    facts = inspect_image(io.BytesIO(png_declaring(8000, 8000, pixels=True)))

    assert (facts.width, facts.height, facts.format) == (8000, 8000, "PNG")


def test_inspect_image_refuses_a_format_not_allowed() -> None:
    with pytest.raises(BadImage, match="not a readable PNG image"):
        inspect_image(io.BytesIO(image_bytes("JPEG")), allowed_formats=("PNG",))


def test_make_thumbnail_fits_the_square_and_rewinds() -> None:
    stream = io.BytesIO(image_bytes("WEBP", (800, 400)))

    thumbnail = Image.open(io.BytesIO(make_thumbnail(stream, size=100)))

    assert (thumbnail.format, thumbnail.size) == ("JPEG", (100, 50))
    assert stream.tell() == 0


def test_make_thumbnail_refuses_a_bomb(no_decoding: None) -> None:
    with pytest.raises(BadImage, match="too many pixels"):
        make_thumbnail(io.BytesIO(png_declaring(10_000, 10_000)), size=100)


def test_reference_limits_match_the_provider() -> None:
    assert media.REFERENCE_FORMATS == ("JPEG", "PNG", "WEBP")
    assert media.MAX_REFERENCE_BYTES == 30 * 1024 * 1024
    assert media.MAX_REFERENCES == 8


def noisy_jpeg(size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.effect_noise(size, 40).convert("RGB").save(out, "JPEG", quality=90)
    return out.getvalue()


def test_inspect_image_gives_a_jpegs_full_size() -> None:
    facts = inspect_image(io.BytesIO(noisy_jpeg((1600, 1200))))

    assert (facts.width, facts.height, facts.format) == (1600, 1200, "JPEG")


def test_inspect_image_refuses_a_jpeg_that_ends_early() -> None:
    data = noisy_jpeg((1600, 1200))

    with pytest.raises(BadImage, match="damaged or incomplete"):
        inspect_image(io.BytesIO(data[:-2000]))


def test_make_thumbnail_shrinks_before_it_converts(monkeypatch: pytest.MonkeyPatch) -> None:
    converted = []
    convert = Image.Image.convert

    def recording_convert(self: Image.Image, *args: object, **kwargs: object) -> Image.Image:
        converted.append(self.size)
        return convert(self, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "convert", recording_convert)

    make_thumbnail(io.BytesIO(image_bytes("PNG", (1200, 900))), size=100)

    assert converted and all(max(size) <= 100 for size in converted)


def test_make_thumbnail_of_a_palette_png_keeps_its_colours() -> None:
    out = io.BytesIO()
    Image.new("RGB", (400, 200), (200, 80, 40)).convert("P").save(out, "PNG")

    thumbnail = Image.open(io.BytesIO(make_thumbnail(out, size=100)))

    assert (thumbnail.mode, thumbnail.size) == ("RGB", (100, 50))
    red, green, blue = thumbnail.getpixel((50, 25))
    assert abs(red - 200) < 12 and abs(green - 80) < 12 and abs(blue - 40) < 12
