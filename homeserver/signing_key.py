"""The server's ed25519 signing key and the self-signed TLS certificate made for it.

The key file uses the same one-line format as Synapse ("ed25519 <id> <seed>"),
so operators can move a key between servers.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from federation.events.signing import (
    decode_signing_key_base64,
    encode_signing_key_base64,
    encode_verify_key_base64,
    generate_signing_key,
    get_verify_key,
)

SigningKey = Any  # nacl.signing.SigningKey carrying .alg and .version


class KeyFileError(Exception):
    pass


def write_new_signing_key(path: str, *, avoid_versions: Collection[str] = ()) -> SigningKey:
    """A fresh key at ``path`` (which must not exist). Its version is random and
    differs from ``avoid_versions``: a peer caches keys by ID, so reusing an ID
    after a rotation would make it check new signatures with the old key."""
    version = os.urandom(4).hex()[:6]
    while version in avoid_versions:
        version = os.urandom(4).hex()[:6]
    key = generate_signing_key(version)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"{key.alg} {key.version} {encode_signing_key_base64(key)}\n")
    return key


@dataclass(frozen=True)
class Rotation:
    """What `rotate_signing_key` did: the retired key's entry for ``old_signing_keys``
    and where its private half was kept."""

    old_key_id: str
    old_public_key: str  # base64, as old_verify_keys publishes it
    expired_ts: int
    new_key_id: str
    archived_path: str


def rotate_signing_key(path: str, now_ms: int, avoid_versions: Collection[str] = ()) -> Rotation:
    """Replace the key at ``path`` with a new one.

    The old private key is moved aside (``<path>.<version>.old``), not deleted: an
    operator who rotated by mistake can put it back. Its public half and ``now_ms``
    are what the config's ``old_signing_keys`` must list from the next start on, so
    peers can still verify what it signed until then.
    """
    old = load_signing_key(path)
    archived = f"{path}.{old.version}.old"
    if os.path.exists(archived):
        raise KeyFileError(f"{archived} already exists; refusing to overwrite a retired key")
    os.rename(path, archived)
    try:
        new = write_new_signing_key(path, avoid_versions={old.version, *avoid_versions})
    except OSError:
        os.rename(archived, path)  # leave the server able to start as before
        raise
    return Rotation(
        old_key_id=key_id(old),
        old_public_key=encode_verify_key_base64(get_verify_key(old)),
        expired_ts=now_ms,
        new_key_id=key_id(new),
        archived_path=archived,
    )


def load_signing_key(path: str) -> SigningKey:
    try:
        with open(path, encoding="ascii") as f:
            line = f.readline().strip()
    except OSError as e:
        raise KeyFileError(f"cannot read signing key {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise KeyFileError(f"signing key {path} is not a valid key file") from None
    parts = line.split()
    if len(parts) != 3 or parts[0] != "ed25519":
        raise KeyFileError(f"signing key {path} is not a valid key file")
    try:
        return decode_signing_key_base64(parts[0], parts[1], parts[2])
    except Exception:
        raise KeyFileError(f"signing key {path} is not a valid key file") from None


def key_id(key: SigningKey) -> str:
    return f"{key.alg}:{key.version}"


def verify_key_of(key: SigningKey) -> Any:
    return get_verify_key(key)


def write_self_signed_cert(cert_path: str, key_path: str, server_name: str) -> None:
    """A certificate for the federation listener when the operator has none yet."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    host = server_name.rsplit(":", 1)[0] if not server_name.startswith("[") else server_name[1:].split("]")[0]
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    try:
        san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        san = x509.DNSName(host)
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .sign(private, hashes.SHA256())
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
