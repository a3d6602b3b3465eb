"""Acceptance checks: does a stored output match what was asked?

Pure functions over plain values and Pillow images, so callers decide where the facts come from.
"""

import itertools
import math
from dataclasses import asdict, dataclass

from PIL import Image, ImageChops, ImageOps, ImageStat

FORMATS = {"png": "PNG", "jpg": "JPEG"}
# The ratios the provider offers; "auto" edits may land on the one nearest the reference.
OFFERED_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
# 16:9 comes back as 1376x768 (0.8% off) and 1408x768 (3.1% off), 21:9 as 1584x672 (1.0%
# off); 4% accepts them all while 5:4 and 4:3, the closest offered pair, stay 6.7% apart.
RATIO_TOLERANCE = 0.04
# A bucket fixes the pixel count, not the long side (1K: 1376x768 and 1024x1024 alike).
BUCKET_PIXELS = {"1K": 1024**2, "2K": 2048**2, "4K": 4096**2}
# The contract sizes are 1.00-1.03x the nominal count; buckets are 4x apart, so this band
# leaves room for other roundings and still flags a neighbouring bucket or an odd size.
BUCKET_BAND = (0.7, 1.45)
# About 64x64 pixels: enough for the composition, cheap in pure Python even at 4K.
THUMBNAIL_PIXELS = 64 * 64
# Mean absolute difference (0-255) of the thumbnails under which nothing visibly changed:
# a JPEG re-encode (quality 60) of a reference measures up to 1.0, the sandbox's edits over 20.
COPY_MAX_DIFFERENCE = 2.0
# Similarity (see compare()) from which the output shows the reference: the sandbox's edits
# measure 0.59-0.94 (0.46 when a 9:16 reference is cut down to 21:9), unrelated sandbox
# renders, which all share one template, mostly below 0.47.
RELATED_MIN_SIMILARITY = 0.5


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class OutputFacts:
    format: str
    width: int
    height: int


def check_output(
    *,
    mode: str,
    aspect_ratio: str,
    resolution: str,
    output_format: str,
    output: OutputFacts,
    output_image: Image.Image | None = None,
    reference_image: Image.Image | None = None,
    reference_size: tuple[int, int] | None = None,
) -> list[Check]:
    """Check an output against its request: format, ratio, bucket, reference, resemblance.

    Pass images upright (EXIF orientation applied). The reference checks run only for edits
    with both images; `reference_size` defaults to the reference image's size.
    """
    if reference_size is None and reference_image is not None:
        reference_size = reference_image.size
    checks = [
        _check_format(output_format, output),
        _check_aspect_ratio(aspect_ratio, output, reference_size if mode == "edit" else None),
        _check_resolution(resolution, output),
    ]
    if mode == "edit" and output_image is not None and reference_image is not None:
        checks += _check_reference(output_image, reference_image)
    return checks


def failed(checks: list[Check]) -> list[str]:
    return [check.name for check in checks if not check.passed]


def _check_format(output_format: str, output: OutputFacts) -> Check:
    expected = FORMATS.get(output_format)
    return Check(
        "format",
        output.format == expected,
        f"{output_format} asked, the stored file is {output.format}",
    )


def _check_aspect_ratio(
    aspect_ratio: str, output: OutputFacts, reference_size: tuple[int, int] | None
) -> Check:
    actual = output.width / output.height
    shown = f"{output.width}×{output.height} is {actual:.2f}"
    if aspect_ratio != "auto":
        expected = _ratio(aspect_ratio)
        off = abs(actual / expected - 1)
        verdict = "within" if off <= RATIO_TOLERANCE else "more than"
        return Check(
            "aspect_ratio",
            off <= RATIO_TOLERANCE,
            f"{aspect_ratio} asked, {shown} ({off:.1%} off {expected:.2f}, "
            f"{verdict} {RATIO_TOLERANCE:.0%})",
        )
    if reference_size is None:
        return Check("aspect_ratio", True, f"auto asked, {shown}: no reference to compare with")
    ref_width, ref_height = reference_size
    expected = ref_width / ref_height
    nearest = _nearest_offered(expected)
    # The model answers one of its offered sizes, so an odd reference gets the nearest one.
    passed = any(abs(actual / r - 1) <= RATIO_TOLERANCE for r in (expected, _ratio(nearest)))
    verdict = "within" if passed else "more than"
    return Check(
        "aspect_ratio",
        passed,
        f"auto asked, {shown}; the reference {ref_width}×{ref_height} is {expected:.2f}, "
        f"nearest offered {nearest} ({verdict} {RATIO_TOLERANCE:.0%})",
    )


def _check_resolution(resolution: str, output: OutputFacts) -> Check:
    pixels = output.width * output.height
    shown = f"{resolution} asked: {output.width}×{output.height} = {pixels / 1e6:.2f} MP"
    if resolution not in BUCKET_PIXELS:
        return Check("resolution", False, f"{shown} (unknown bucket)")
    passed = _in_bucket(pixels, resolution)
    detail = f"{shown} (expected about {BUCKET_PIXELS[resolution] / 1e6:.2f} MP)"
    elsewhere = [bucket for bucket in BUCKET_PIXELS if _in_bucket(pixels, bucket)]
    if not passed and elsewhere:
        detail = f"{detail}, a {elsewhere[0]} size"
    return Check("resolution", passed, detail)


def _in_bucket(pixels: int, resolution: str) -> bool:
    low, high = BUCKET_BAND
    return low <= pixels / BUCKET_PIXELS[resolution] <= high


def _check_reference(output_image: Image.Image, reference_image: Image.Image) -> list[Check]:
    """Check that an edit changed its reference ("reference") and still shows it ("resemblance").

    A copy is clear cut (COPY_MAX_DIFFERENCE has a wide margin); resemblance is a judgement
    whose scores overlap between edits and unrelated pictures (RELATED_MIN_SIMILARITY).
    """
    difference, score = compare(output_image, reference_image)
    changed = difference >= COPY_MAX_DIFFERENCE
    related = score >= RELATED_MIN_SIMILARITY
    return [
        Check(
            "reference",
            changed,
            f"output changes the reference (mean difference {difference:.0f} of 255)"
            if changed
            else f"output is the reference unchanged (mean difference {difference:.1f} of 255)",
        ),
        Check(
            "resemblance",
            related,
            f"output resembles the reference (similarity {score:.2f})"
            if related
            else f"output does not resemble the reference (similarity {score:.2f}, "
            f"{RELATED_MIN_SIMILARITY} needed)",
        ),
    ]


def compare(output_image: Image.Image, reference_image: Image.Image) -> tuple[float, float]:
    """Return the mean difference (0-255) and the similarity (-1 to 1) of two pictures.

    The similarity is the better of the reference and its mirror, whatever the colours.
    """
    ratio = output_image.width / output_image.height
    output = _thumbnail(output_image, ratio)
    reference = _thumbnail(reference_image, ratio)
    difference = sum(ImageStat.Stat(ImageChops.difference(output, reference)).mean) / 3
    score = max(_similarity(output, reference), _similarity(output, ImageOps.mirror(reference)))
    return difference, score


def _similarity(output: Image.Image, reference: Image.Image) -> float:
    # Correlate channel with channel under the best of the six pairings: a colour shift that
    # swaps channels (as the sandbox's edit does) still shows the same picture.
    outs = [_standardised(band) for band in output.split()]
    refs = [_standardised(band) for band in reference.split()]
    pairs = [[sum(a * b for a, b in zip(o, r, strict=True)) for r in refs] for o in outs]
    return max(
        sum(pairs[i][j] for i, j in enumerate(order)) / 3
        for order in itertools.permutations(range(3))
    )


def _standardised(band: Image.Image) -> list[float]:
    values = band.tobytes()
    mean = sum(values) / len(values)
    norm = math.sqrt(sum((v - mean) ** 2 for v in values))
    # A flat channel carries no picture: it correlates with nothing.
    return [(v - mean) / norm if norm else 0.0 for v in values]


def _thumbnail(image: Image.Image, ratio: float) -> Image.Image:
    """Crop the centre of `image` to `ratio` (as the model fits a reference) and shrink it."""
    width, height = image.size
    if width / height > ratio:
        crop = min(width, height * ratio)
        box = ((width - crop) / 2, 0, (width + crop) / 2, height)
    else:
        # min(): width / ratio can round a hair above height when the ratios are equal.
        crop = min(height, width / ratio)
        box = (0, (height - crop) / 2, width, (height + crop) / 2)
    side = math.sqrt(THUMBNAIL_PIXELS)
    size = (max(1, round(side * math.sqrt(ratio))), max(1, round(side / math.sqrt(ratio))))
    if image.mode != "RGB":
        image = image.convert("RGB")
    return image.resize(size, Image.Resampling.BILINEAR, box=box, reducing_gap=2.0)


def _ratio(name: str) -> float:
    width, height = name.split(":")
    return int(width) / int(height)


def _nearest_offered(ratio: float) -> str:
    # In log space, so 2:1 and 1:2 are equally far from 1:1.
    return min(OFFERED_RATIOS, key=lambda name: abs(math.log(_ratio(name) / ratio)))
