import io

import pytest
from PIL import Image

from imagereview.acceptance import (
    COPY_MAX_DIFFERENCE,
    RELATED_MIN_SIMILARITY,
    Check,
    OutputFacts,
    check_output,
    compare,
    failed,
)
from imagereview.providers.sandbox.render import render

# The 1K sizes of the provider contract (kie-jobs-api.md, "Limits and prices").
CONTRACT_1K = [
    ("1:1", 1024, 1024),
    ("16:9", 1376, 768),
    ("16:9", 1408, 768),
    ("9:16", 768, 1376),
    ("4:3", 1200, 896),
    ("3:2", 1264, 848),
    ("21:9", 1584, 672),
]
SCALE = {"1K": 1, "2K": 2, "4K": 4}
REFERENCE_PROMPT = "a lighthouse on a cliff at dusk"


def _check(name: str, **kwargs) -> Check:
    params = {
        "mode": "generate",
        "aspect_ratio": "1:1",
        "resolution": "1K",
        "output_format": "png",
        "output": OutputFacts("PNG", 1024, 1024),
    }
    checks = check_output(**(params | kwargs))
    return next(check for check in checks if check.name == name)


def _open(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


@pytest.fixture(scope="module")
def reference() -> bytes:
    return render(REFERENCE_PROMPT, aspect_ratio="4:3")


@pytest.fixture(scope="module")
def sandbox_edit(reference: bytes) -> Image.Image:
    return _open(render("make it winter", aspect_ratio="auto", reference=reference))


def _check_edit(output: Image.Image, reference: Image.Image, name: str = "reference") -> Check:
    return _check(
        name,
        mode="edit",
        aspect_ratio="auto",
        output=OutputFacts(output.format or "PNG", *output.size),
        output_image=output,
        reference_image=reference,
    )


@pytest.mark.parametrize("resolution", SCALE)
@pytest.mark.parametrize(("ratio", "width", "height"), CONTRACT_1K)
def test_contract_size_passes_its_ratio_and_bucket(
    ratio: str, width: int, height: int, resolution: str
) -> None:
    scale = SCALE[resolution]
    checks = check_output(
        mode="generate",
        aspect_ratio=ratio,
        resolution=resolution,
        output_format="png",
        output=OutputFacts("PNG", width * scale, height * scale),
    )
    assert [check.name for check in checks] == ["format", "aspect_ratio", "resolution"]
    assert failed(checks) == []


@pytest.mark.parametrize(
    ("asked", "given"), [("1K", "2K"), ("2K", "1K"), ("2K", "4K"), ("4K", "2K")]
)
@pytest.mark.parametrize(("ratio", "width", "height"), CONTRACT_1K)
def test_contract_size_fails_a_neighbouring_bucket(
    ratio: str, width: int, height: int, asked: str, given: str
) -> None:
    scale = SCALE[given]
    check = _check(
        "resolution", resolution=asked, output=OutputFacts("PNG", width * scale, height * scale)
    )
    assert not check.passed
    assert check.detail.endswith(f", a {given} size")


def test_resolution_detail_states_the_pixel_counts() -> None:
    check = _check("resolution", output=OutputFacts("PNG", 1376, 768))
    assert check.detail == "1K asked: 1376×768 = 1.06 MP (expected about 1.05 MP)"


def test_odd_pixel_count_fails_every_bucket() -> None:
    for resolution in SCALE:
        assert not _check(
            "resolution", resolution=resolution, output=OutputFacts("PNG", 1448, 1448)
        ).passed


def test_wrong_ratio_fails() -> None:
    check = _check("aspect_ratio", aspect_ratio="16:9", output=OutputFacts("PNG", 1024, 1024))
    assert not check.passed
    assert check.detail == "16:9 asked, 1024×1024 is 1.00 (43.8% off 1.78, more than 4%)"


def test_ratio_detail_says_how_far_off() -> None:
    check = _check("aspect_ratio", aspect_ratio="16:9", output=OutputFacts("PNG", 1376, 768))
    assert check.passed
    assert check.detail == "16:9 asked, 1376×768 is 1.79 (0.8% off 1.78, within 4%)"


def test_closest_offered_ratios_are_told_apart() -> None:
    assert not _check(
        "aspect_ratio", aspect_ratio="4:3", output=OutputFacts("PNG", 1152, 928)
    ).passed
    assert not _check(
        "aspect_ratio", aspect_ratio="5:4", output=OutputFacts("PNG", 1200, 896)
    ).passed


@pytest.mark.parametrize(
    ("asked", "stored", "passed"),
    [("png", "PNG", True), ("jpg", "JPEG", True), ("png", "JPEG", False), ("jpg", "PNG", False)],
)
def test_format_must_be_the_one_asked(asked: str, stored: str, passed: bool) -> None:
    check = _check("format", output_format=asked, output=OutputFacts(stored, 1024, 1024))
    assert check.passed is passed
    assert check.detail == f"{asked} asked, the stored file is {stored}"


def test_webp_fails_either_format() -> None:
    assert not _check("format", output=OutputFacts("WEBP", 1024, 1024)).passed


def test_auto_for_a_prompt_has_nothing_to_check() -> None:
    check = _check("aspect_ratio", aspect_ratio="auto", output=OutputFacts("PNG", 1584, 672))
    assert check.passed
    assert "no reference to compare with" in check.detail


def test_auto_for_an_edit_follows_the_reference() -> None:
    portrait = {"mode": "edit", "aspect_ratio": "auto", "reference_size": (600, 800)}
    assert _check("aspect_ratio", output=OutputFacts("PNG", 896, 1200), **portrait).passed
    assert not _check("aspect_ratio", output=OutputFacts("PNG", 1200, 896), **portrait).passed


def test_auto_for_an_edit_accepts_the_nearest_offered_ratio() -> None:
    # 1900x1000 (1.90) is 6.9% off 16:9, the nearest size the model can answer.
    check = _check(
        "aspect_ratio",
        mode="edit",
        aspect_ratio="auto",
        reference_size=(1900, 1000),
        output=OutputFacts("PNG", 1376, 768),
    )
    assert check.passed
    assert "nearest offered 16:9" in check.detail


def test_auto_for_an_edit_reads_the_size_from_the_reference_image() -> None:
    check = _check(
        "aspect_ratio",
        mode="edit",
        aspect_ratio="auto",
        output=OutputFacts("PNG", 1024, 1024),
        reference_image=Image.new("RGB", (400, 700)),
    )
    assert not check.passed


def test_reference_is_checked_only_for_edits_with_both_images(sandbox_edit: Image.Image) -> None:
    base = {
        "aspect_ratio": "auto",
        "resolution": "1K",
        "output_format": "png",
        "output": OutputFacts("PNG", *sandbox_edit.size),
    }
    images = {"output_image": sandbox_edit, "reference_image": sandbox_edit}
    assert len(check_output(mode="generate", **base, **images)) == 3
    assert len(check_output(mode="edit", **base, output_image=sandbox_edit)) == 3
    checks = check_output(mode="edit", **base, **images)
    names = [check.name for check in checks]
    assert names == ["format", "aspect_ratio", "resolution", "reference", "resemblance"]


def test_sandbox_edit_resembles_the_reference(reference: bytes, sandbox_edit: Image.Image) -> None:
    difference, similarity = compare(sandbox_edit, _open(reference))
    assert similarity > RELATED_MIN_SIMILARITY + 0.2
    assert difference > COPY_MAX_DIFFERENCE * 10

    changed = _check_edit(sandbox_edit, _open(reference))
    assert changed.passed
    assert changed.detail.startswith("output changes the reference (mean difference")
    resemblance = _check_edit(sandbox_edit, _open(reference), "resemblance")
    assert resemblance.passed
    assert resemblance.detail.startswith("output resembles the reference (similarity")


def test_sandbox_edit_at_another_ratio_resembles_the_reference(reference: bytes) -> None:
    wide = _open(render("make it winter", aspect_ratio="16:9", reference=reference))
    assert _check_edit(wide, _open(reference)).passed
    assert _check_edit(wide, _open(reference), "resemblance").passed


def test_identical_copy_fails_the_reference_check_only(reference: bytes) -> None:
    check = _check_edit(_open(reference), _open(reference))
    assert not check.passed
    assert check.detail.startswith("output is the reference unchanged")
    assert _check_edit(_open(reference), _open(reference), "resemblance").passed


def test_reencoded_copy_fails(reference: bytes) -> None:
    buffer = io.BytesIO()
    _open(reference).convert("RGB").save(buffer, "JPEG", quality=60)
    assert not _check_edit(_open(buffer.getvalue()), _open(reference)).passed
    assert _check_edit(_open(buffer.getvalue()), _open(reference), "resemblance").passed


def test_unrelated_render_fails_the_resemblance_check_only(reference: bytes) -> None:
    unrelated = _open(render("a bowl of ramen on a table", aspect_ratio="4:3"))
    _, similarity = compare(unrelated, _open(reference))
    assert similarity < RELATED_MIN_SIMILARITY - 0.1

    assert _check_edit(unrelated, _open(reference)).passed
    check = _check_edit(unrelated, _open(reference), "resemblance")
    assert not check.passed
    assert check.detail.startswith("output does not resemble the reference")


def test_check_as_dict() -> None:
    check = Check("format", True, "png asked, the stored file is PNG")
    assert check.as_dict() == {
        "name": "format",
        "passed": True,
        "detail": "png asked, the stored file is PNG",
    }
