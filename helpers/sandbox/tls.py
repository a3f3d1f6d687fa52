"""TLS for the sandbox: a certificate authority made once per sandbox home, and a server certificate.

AWS endpoints are HTTPS only, so the sandbox is too. The first start of a
sandbox home creates a small CA (``ca.pem``, the file to trust:
``AWS_CA_BUNDLE`` for boto3 and the CLI, ``--cacert`` for curl, ``verify=`` for
requests) and a server certificate it signs, valid for ``localhost``,
``127.0.0.1`` and ``::1``. Private keys are written owner-only (0600) and are
never printed. Both use ECDSA P-256: small keys and fast handshakes.

Usage:

>>> import tempfile, ssl
>>> home = Path(tempfile.mkdtemp())
>>> paths = ensure_certificates(home)
>>> paths.ca_cert.name, oct(paths.server_key.stat().st_mode & 0o777)
('ca.pem', '0o600')
>>> isinstance(server_context(paths), ssl.SSLContext)
True
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from helpers.targets import SANDBOX_CA_NAME  # defined there: the aws path recognises it without the sandbox

from .core import REGIONS

#: ``localhost`` (the data endpoint of the default region) and ``REGION.localhost`` for every other region.
SERVER_NAMES = ("localhost", *(f"{r}.localhost" for r in REGIONS))
SERVER_IPS = ("127.0.0.1", "::1")


@dataclass(frozen=True)
class CertPaths:
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path


def _write_private(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _valid(cert_path: Path, margin_days: int = 7) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError):
        return False
    return cert.not_valid_after_utc > dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=margin_days)


def _names_cover(cert_path: Path) -> bool:
    """True when the certificate names every host the sandbox answers as (older homes lack the regional ones)."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName)
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    return set(SERVER_NAMES) <= set(names)


def ensure_certificates(home: Path) -> CertPaths:
    """Create (or reuse) the CA and the server certificate in ``home``; renew what is missing or expiring."""
    home.mkdir(parents=True, exist_ok=True)
    paths = CertPaths(home / "ca.pem", home / "ca-key.pem", home / "server.pem", home / "server-key.pem")
    now = dt.datetime.now(dt.timezone.utc)
    start = now - dt.timedelta(minutes=5)

    if _valid(paths.ca_cert) and paths.ca_key.exists():
        ca_key = serialization.load_pem_private_key(paths.ca_key.read_bytes(), None)
        ca_cert = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SANDBOX_CA_NAME)])
        ca_cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        _write_private(paths.ca_key, ca_key)
        _write_public(paths.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM))
        paths.server_cert.unlink(missing_ok=True)  # a new CA invalidates the old server certificate

    if not (_valid(paths.server_cert) and paths.server_key.exists() and _names_cover(paths.server_cert)):
        key = ec.generate_private_key(ec.SECP256R1())
        san = [x509.DNSName(n) for n in SERVER_NAMES] + [x509.IPAddress(ipaddress.ip_address(i)) for i in SERVER_IPS]
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(now + dt.timedelta(days=825))
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        _write_private(paths.server_key, key)
        _write_public(paths.server_cert, cert.public_bytes(serialization.Encoding.PEM))
    return paths


def server_context(paths: CertPaths, alpn: list[str] | None = None) -> ssl.SSLContext:
    """A server-side SSLContext offering ``alpn``; the SNI host name a client sends is kept as ``.sni``
    on its SSL socket or object."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(paths.server_cert, paths.server_key)
    if alpn:
        ctx.set_alpn_protocols(alpn)

    def remember_sni(sock, server_name, _ctx):  # called during the handshake
        sock.sni = server_name
        return None

    ctx.sni_callback = remember_sni
    return ctx
