"""Who signs Content Credentials: the key and certificate chain named by the settings, or a
local test CA made on first use, whose names say it is not trusted.

c2pa is imported only where a signer is made, so that this module loads where c2pa cannot.
"""

import io
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from PIL import Image

TEST_ORGANIZATION = "imagereview local test CA - NOT TRUSTED"
TEST_ROOT_NAME = "imagereview local test root - NOT TRUSTED"
TEST_SIGNER_NAME = "imagereview local test signer - NOT TRUSTED"
TEST_FOLDER = "test-signer"
KEY_FILE, CHAIN_FILE, ROOT_FILE = "signer-key.pem", "signer-chain.pem", "root.pem"
TEST_VALIDITY = timedelta(days=3650)
# The algorithm c2pa signs with, by key type and (for EC keys) curve.
EC_ALGORITHMS = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}
TRIAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"


class SigningConfigurationError(ImproperlyConfigured):
    """The signing key or certificate chain cannot be used; the message says why."""


@dataclass(frozen=True)
class SigningIdentity:
    signer: Any  # c2pa.Signer
    subject: str


_lock = threading.Lock()
_cached: tuple[tuple, SigningIdentity] | None = None


def signing_identity() -> SigningIdentity:
    """Return this process's signer for the current settings, made and tried out once.

    A forked worker makes its own: c2pa closes a parent's signer in the child.
    """
    global _cached
    key_path, chain_path = signing_files()
    timestamp_url = settings.C2PA_TIMESTAMP_URL or None
    try:
        versions = tuple(path.stat().st_mtime_ns for path in (key_path, chain_path))
    except OSError as error:
        raise SigningConfigurationError(
            f"cannot read the C2PA signing key or certificate chain: {error}"
        ) from error
    cache_key = (os.getpid(), key_path, chain_path, timestamp_url, versions)
    with _lock:
        if _cached is None or _cached[0] != cache_key:
            _cached = (cache_key, _load(key_path, chain_path, timestamp_url))
        return _cached[1]


def signing_files() -> tuple[Path, Path]:
    """The private key and certificate chain (PEM files) to sign with."""
    key, chain = settings.C2PA_SIGNING_KEY, settings.C2PA_CERTIFICATE_CHAIN
    if key and chain:
        return Path(key), Path(chain)
    if key or chain:
        raise SigningConfigurationError(
            "C2PA_SIGNING_KEY and C2PA_CERTIFICATE_CHAIN must be set together"
        )
    return local_test_signer(Path(settings.C2PA_LOCAL_DIR))


def local_test_signer(directory: Path) -> tuple[Path, Path]:
    """Make the local test CA and its signer in `directory` unless they exist; return the
    signer's key and chain files.

    Everything is written into a private staging folder that one rename puts in place, so
    processes racing here keep whichever finished first and none sees half a set.
    """
    folder = directory / TEST_FOLDER
    if (folder / CHAIN_FILE).exists():
        return folder / KEY_FILE, folder / CHAIN_FILE
    try:
        directory.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{TEST_FOLDER}-", dir=directory))
        try:
            _write_test_ca(staging)
            staging.rename(folder)
        except OSError:
            if not (folder / CHAIN_FILE).exists():
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except OSError as error:
        raise SigningConfigurationError(
            f"cannot make the local test signer in {directory}: {error}"
        ) from error
    return folder / KEY_FILE, folder / CHAIN_FILE


def _write_test_ca(folder: Path) -> None:
    """Write a root CA certificate and an end-entity signer that meets C2PA's certificate
    profile: v3, P-256, not a CA, digitalSignature only, emailProtection, both key ids."""
    now = datetime.now(UTC)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = _name(TEST_ROOT_NAME)
    root = (
        _certificate(root_name, root_name, root_key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .sign(root_key, hashes.SHA256())
    )
    signer_key = ec.generate_private_key(ec.SECP256R1())
    authority = x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key())
    signer = (
        _certificate(_name(TEST_SIGNER_NAME), root_name, signer_key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
        .add_extension(authority, critical=False)
        .sign(root_key, hashes.SHA256())
    )
    key_pem = signer_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    descriptor = os.open(folder / KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as key_file:
        key_file.write(key_pem)
    # The chain stops before the root, which validators must hold as a trust anchor.
    (folder / CHAIN_FILE).write_bytes(signer.public_bytes(serialization.Encoding.PEM))
    (folder / ROOT_FILE).write_bytes(root.public_bytes(serialization.Encoding.PEM))


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, TEST_ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _certificate(subject: x509.Name, issuer: x509.Name, public_key, now: datetime):
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + TEST_VALIDITY)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _key_usage(**granted: bool) -> x509.KeyUsage:
    usages = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment")
    usages += ("key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
    return x509.KeyUsage(**{usage: granted.get(usage, False) for usage in usages})


def _load(key_path: Path, chain_path: Path, timestamp_url: str | None) -> SigningIdentity:
    """Make a c2pa signer from the files and sign a tiny image with it, so that a key or
    certificate c2pa refuses is reported here once, not as every publication fails."""
    import c2pa

    try:
        key_pem, chain_pem = key_path.read_bytes(), chain_path.read_bytes()
        key = serialization.load_pem_private_key(key_pem, password=None)
        certificate = x509.load_pem_x509_certificates(chain_pem)[0]
    except (OSError, ValueError, TypeError) as error:
        raise SigningConfigurationError(
            f"cannot read the C2PA signing key or certificate chain: {error}"
        ) from error
    info = c2pa.C2paSignerInfo(_algorithm(key), chain_pem, key_pem, timestamp_url)
    try:
        signer = c2pa.Signer.from_info(info)
        _try_out(c2pa, signer)
    except c2pa.C2paError as error:
        raise SigningConfigurationError(
            f"c2pa cannot sign with {key_path} and {chain_path}: {error}"
        ) from error
    return SigningIdentity(signer=signer, subject=certificate.subject.rfc4514_string())


def _algorithm(key) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in EC_ALGORITHMS:
        return EC_ALGORITHMS[key.curve.name]
    if isinstance(key, rsa.RSAPrivateKey):
        return "ps256"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    raise SigningConfigurationError(f"C2PA cannot sign with a {type(key).__name__} key")


def _try_out(c2pa, signer) -> None:
    tiny = io.BytesIO()
    Image.new("RGB", (1, 1)).save(tiny, "PNG")
    tiny.seek(0)
    created = {"action": "c2pa.created", "digitalSourceType": TRIAL_SOURCE_TYPE}
    definition = {
        "title": "signer trial",
        "assertions": [{"label": "c2pa.actions", "data": {"actions": [created]}}],
    }
    with c2pa.Builder(definition) as builder:
        builder.sign(signer, "image/png", tiny, io.BytesIO())
