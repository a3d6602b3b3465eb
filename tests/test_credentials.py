"""Content Credentials in published files, read back with c2pa's own Reader."""

import io
import json
import sys
import threading
from pathlib import Path

import c2pa
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from PIL import Image

from imagereview.publishing.credentials import (
    APPROVAL_LABEL,
    CredentialsError,
    Reference,
    embed_credentials,
    read_credentials,
)
from imagereview.publishing.signer import (
    CHAIN_FILE,
    KEY_FILE,
    ROOT_FILE,
    TEST_FOLDER,
    SigningConfigurationError,
    local_test_signer,
)
from tests.factories import picture

SOURCE_TYPES = "http://cv.iptc.org/newscodes/digitalsourcetype/"


@pytest.fixture(autouse=True)
def local_signing(settings) -> None:
    settings.C2PA_ENABLED = True
    settings.C2PA_SIGNING_KEY = settings.C2PA_CERTIFICATE_CHAIN = settings.C2PA_TIMESTAMP_URL = ""


def provenance(mode: str = "generate", content_type: str = "image/png") -> dict:
    """A provenance manifest as `manifest_for` builds one, with what credentials use."""
    return {
        "manifest_version": "1.0",
        "generator": {"name": "imagereview", "version": "0.1.0"},
        "ai_generated": True,
        "digital_source_type": (
            "trainedAlgorithmicMedia"
            if mode == "generate"
            else "compositeWithTrainedAlgorithmicMedia"
        ),
        "model": {"name": "nano-banana-pro", "provider": "kie"},
        "request": {"id": 12, "mode": mode, "prompt": "a lighthouse at dusk", "revision": 1},
        "output": {"id": 55, "variant": 1, "sha256": "ab" * 32, "content_type": content_type},
        "decisions": [
            {
                "verdict": "approve",
                "reason": "",
                "comment": "sharp enough",
                "at": "2026-12-01T10:05:00Z",
                "reviewer": {"role": "reviewer", "name": None},
                "undone_at": None,
            }
        ],
        "approval": {
            "approved": True,
            "approvals": 1,
            "required_approvals": 1,
            "approved_at": "2026-12-01T10:05:00Z",
        },
    }


def jpeg(content: bytes) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(content)).convert("RGB").save(out, "JPEG", quality=90)
    return out.getvalue()


def sign(content: bytes, content_type: str, manifest: dict, references=()):
    dest = io.BytesIO()
    outcome = embed_credentials(
        io.BytesIO(content),
        dest,
        content_type=content_type,
        manifest=manifest,
        references=list(references),
    )
    return outcome, dest.getvalue()


def reader_json(content: bytes, content_type: str, context=None) -> dict:
    with c2pa.Reader(content_type, io.BytesIO(content), None, context) as reader:
        return json.loads(reader.json())


def active(store: dict) -> dict:
    return store["manifests"][store["active_manifest"]]


def assertion(manifest: dict, label: str) -> dict:
    [data] = [item["data"] for item in manifest["assertions"] if item["label"] == label]
    return data


def expected_approval() -> dict:
    manifest = provenance()
    return {
        "manifest_version": "1.0",
        "request_id": 12,
        "output_id": 55,
        "output_sha256": "ab" * 32,
        "prompt": "a lighthouse at dusk",
        "decisions": manifest["decisions"],
        "approval": manifest["approval"],
    }


def test_generation_credentials_say_a_model_made_it_and_who_approved() -> None:
    original = picture("a lighthouse at dusk")
    outcome, signed = sign(original, "image/png", provenance())

    assert outcome.status == "signed"
    assert "NOT TRUSTED" in outcome.note
    store = reader_json(signed, "image/png")
    manifest = active(store)
    assert manifest["title"] == "Request #12, variant 1"
    assert manifest["claim_generator_info"][0]["name"] == "imagereview"
    [created] = assertion(manifest, "c2pa.actions.v2")["actions"]
    assert created["action"] == "c2pa.created"
    assert created["digitalSourceType"] == SOURCE_TYPES + "trainedAlgorithmicMedia"
    assert created["softwareAgent"]["name"] == "nano-banana-pro via kie"
    assert assertion(manifest, APPROVAL_LABEL) == expected_approval()
    assert "ingredients" not in manifest or manifest["ingredients"] == []
    assert "NOT TRUSTED" in manifest["signature_info"]["common_name"]
    assert "NOT TRUSTED" in manifest["signature_info"]["issuer"]
    # Valid, and untrusted only because no validator holds the local test root.
    assert store["validation_state"] == "Valid"
    assert [status["code"] for status in store["validation_status"]] == [
        "signingCredential.untrusted"
    ]
    with Image.open(io.BytesIO(signed)) as image, Image.open(io.BytesIO(original)) as before:
        assert image.format == "PNG"
        assert image.size == before.size
        assert image.tobytes() == before.tobytes()


def test_edit_credentials_list_each_reference_as_an_ingredient() -> None:
    original = jpeg(picture("a lighthouse at dusk, in blue", "4:3"))
    references = [
        Reference(io.BytesIO(picture("harbour", "4:3")), "image/png", "Reference 1"),
        Reference(io.BytesIO(jpeg(picture("boat"))), "image/jpeg", "Reference 2"),
    ]
    outcome, signed = sign(original, "image/jpeg", provenance("edit", "image/jpeg"), references)

    assert outcome.status == "signed"
    store = reader_json(signed, "image/jpeg")
    manifest = active(store)
    created, edited = assertion(manifest, "c2pa.actions.v2")["actions"]
    assert created["action"] == "c2pa.created"
    assert edited["action"] == "c2pa.edited"
    for action in (created, edited):
        assert action["digitalSourceType"] == SOURCE_TYPES + "compositeWithTrainedAlgorithmicMedia"
        assert action["softwareAgent"]["name"] == "nano-banana-pro via kie"
    assert len(edited["parameters"]["ingredients"]) == 2
    ingredients = manifest["ingredients"]
    assert [ingredient["title"] for ingredient in ingredients] == ["Reference 1", "Reference 2"]
    assert {ingredient["relationship"] for ingredient in ingredients} == {"inputTo"}
    assert [ingredient["format"] for ingredient in ingredients] == ["image/png", "image/jpeg"]
    assert assertion(manifest, APPROVAL_LABEL) == expected_approval()
    assert store["validation_state"] == "Valid"
    with Image.open(io.BytesIO(signed)) as image, Image.open(io.BytesIO(original)) as before:
        assert image.format == "JPEG"
        assert image.size == before.size


def test_credentials_are_trusted_by_a_validator_that_holds_the_local_root(settings) -> None:
    _, signed = sign(picture("a lighthouse at dusk"), "image/png", provenance())

    root = (Path(settings.C2PA_LOCAL_DIR) / TEST_FOLDER / ROOT_FILE).read_text()
    with c2pa.Context.from_dict({"trust": {"trust_anchors": root}}) as context:
        store = reader_json(signed, "image/png", context)
    assert store["validation_state"] == "Trusted"


def test_read_credentials_returns_the_manifest_store() -> None:
    _, signed = sign(picture("a lighthouse at dusk"), "image/png", provenance())

    store = read_credentials(io.BytesIO(signed), "image/png")

    assert store == reader_json(signed, "image/png")


def test_read_credentials_of_a_file_without_any_says_so() -> None:
    with pytest.raises(CredentialsError, match="no Content Credentials"):
        read_credentials(io.BytesIO(picture("a lighthouse at dusk")), "image/png")


def test_webp_is_published_unchanged_with_the_reason() -> None:
    out = io.BytesIO()
    Image.open(io.BytesIO(picture("a lighthouse at dusk"))).save(out, "WEBP")

    outcome, published = sign(out.getvalue(), "image/webp", provenance())

    assert outcome.status == "skipped"
    assert "PNG and JPEG files only, not image/webp" in outcome.note
    assert published == out.getvalue()


def test_credentials_disabled_by_setting_are_skipped(settings) -> None:
    settings.C2PA_ENABLED = False
    original = picture("a lighthouse at dusk")

    outcome, published = sign(original, "image/png", provenance())

    assert outcome.status == "skipped"
    assert outcome.note == "disabled by C2PA_ENABLED"
    assert published == original


def test_platform_without_c2pa_publishes_unchanged_with_the_reason(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "c2pa", None)
    original = picture("a lighthouse at dusk")

    outcome, published = sign(original, "image/png", provenance())

    assert outcome.status == "skipped"
    assert outcome.note.startswith("c2pa cannot be loaded on this platform")
    assert published == original


def test_file_that_c2pa_cannot_sign_is_published_unchanged_with_the_reason() -> None:
    broken = picture("a lighthouse at dusk")[:2000]

    outcome, published = sign(broken, "image/png", provenance())

    assert outcome.status == "skipped"
    assert outcome.note.startswith("c2pa could not sign this file")
    assert published == broken


def test_configured_key_and_chain_sign(settings, tmp_path: Path) -> None:
    key, chain = local_test_signer(tmp_path)
    settings.C2PA_SIGNING_KEY, settings.C2PA_CERTIFICATE_CHAIN = str(key), str(chain)

    outcome, _ = sign(picture("a lighthouse at dusk"), "image/png", provenance())

    assert outcome.status == "signed"
    assert outcome.note.startswith("CN=imagereview local test signer - NOT TRUSTED")


def test_broken_key_path_stops_publishing_with_the_reason(settings, tmp_path: Path) -> None:
    _, chain = local_test_signer(tmp_path)
    settings.C2PA_SIGNING_KEY = str(tmp_path / "missing-key.pem")
    settings.C2PA_CERTIFICATE_CHAIN = str(chain)
    dest = io.BytesIO()

    with pytest.raises(SigningConfigurationError, match="missing-key.pem"):
        embed_credentials(
            io.BytesIO(picture("a lighthouse at dusk")),
            dest,
            content_type="image/png",
            manifest=provenance(),
            references=[],
        )
    assert dest.getvalue() == b""


def test_key_that_does_not_match_the_certificate_is_refused(settings, tmp_path: Path) -> None:
    _, chain = local_test_signer(tmp_path)
    other_key = tmp_path / "other-key.pem"
    other_key.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    settings.C2PA_SIGNING_KEY, settings.C2PA_CERTIFICATE_CHAIN = str(other_key), str(chain)

    with pytest.raises(SigningConfigurationError, match="c2pa cannot sign with"):
        sign(picture("a lighthouse at dusk"), "image/png", provenance())


def test_key_without_a_chain_is_refused(settings, tmp_path: Path) -> None:
    key, _ = local_test_signer(tmp_path)
    settings.C2PA_SIGNING_KEY = str(key)

    with pytest.raises(SigningConfigurationError, match="must be set together"):
        sign(picture("a lighthouse at dusk"), "image/png", provenance())


def test_local_test_signer_meets_the_c2pa_certificate_profile(tmp_path: Path) -> None:
    key_path, chain_path = local_test_signer(tmp_path)

    [certificate] = x509.load_pem_x509_certificates(chain_path.read_bytes())
    assert "NOT TRUSTED" in certificate.subject.rfc4514_string()
    assert "NOT TRUSTED" in certificate.issuer.rfc4514_string()
    assert certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    usage = certificate.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_cert_sign
    purposes = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(purposes) == [ExtendedKeyUsageOID.EMAIL_PROTECTION]
    assert isinstance(certificate.public_key(), ec.EllipticCurvePublicKey)
    assert certificate.public_key().curve.name == "secp256r1"
    assert key_path.stat().st_mode & 0o777 == 0o600


def test_local_test_signer_raced_by_many_is_made_once(tmp_path: Path) -> None:
    start = threading.Barrier(6)
    made: list[tuple[Path, Path]] = []

    def make() -> None:
        start.wait()
        made.append(local_test_signer(tmp_path))

    threads = [threading.Thread(target=make) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert made == [(tmp_path / TEST_FOLDER / KEY_FILE, tmp_path / TEST_FOLDER / CHAIN_FILE)] * 6
    assert [path.name for path in tmp_path.iterdir()] == [TEST_FOLDER]
    key = serialization.load_pem_private_key(made[0][0].read_bytes(), password=None)
    [certificate] = x509.load_pem_x509_certificates(made[0][1].read_bytes())
    assert certificate.public_key() == key.public_key()
