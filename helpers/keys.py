"""The token-signing key pair: create it, load it, sign tokens with it.

With token signing enabled, a client sends a token *and* a signature of that
token. AWS IoT Core checks the signature with the public key stored on the
authorizer before it calls the Lambda function, so only someone holding the
private key can produce tokens that reach the function. This module does in
Python what the AWS tutorial does with ``openssl``, and :func:`openssl_commands`
shows the equivalent ``openssl`` lines with the real file paths.

Files written by :func:`generate_key_pair` (``NAME`` defaults to ``token-signing``):

- ``NAME-private-key.pem``: the RSA private key, unencrypted PKCS#8 PEM
  (a PEM file whose first line says ``BEGIN PRIVATE KEY``). That is what ``openssl genrsa`` writes on
  OpenSSL 3, and ``openssl dgst -sign``, ``openssl rsa -check`` (OpenSSL 1.1,
  3.x, LibreSSL) all read it. Mode 0600, owner only, from the moment it exists:
  it is written to a temporary file opened with mode 0600 and then renamed.
- ``NAME-public-key.pem``: the public key as SubjectPublicKeyInfo PEM
  (``-----BEGIN PUBLIC KEY-----``), the form the authorizer's
  ``tokenSigningPublicKeys`` expects. Mode 0644; it is not a secret.

A directory that does not exist yet is created with mode 0700. An existing
private key that group or others may read is refused (:class:`KeyFileError`),
as OpenSSH refuses an unprotected key: the key may already have been copied, so
quietly tightening the mode would hide the problem. The message says how to fix
it (``chmod 600 FILE``, or delete the pair to make a new one).

Nothing here prints or returns private key material; ``repr(KeyPair)`` shows
only paths and the key size.

Usage:

>>> import tempfile, pathlib
>>> tmp = tempfile.TemporaryDirectory()
>>> pair = generate_key_pair(pathlib.Path(tmp.name) / "keys", bits=2048)
>>> pair.public_key_pem.startswith("-----BEGIN PUBLIC KEY-----")
True
>>> signature = sign_token(pair.private_key_path, "tokenKeyValue")
>>> verify_signature(pair.public_key_pem, "tokenKeyValue", signature)
True
>>> verify_signature(pair.public_key_pem, "tokenKeyValue", tamper(signature))
False
>>> generate_key_pair(pathlib.Path(tmp.name) / "keys", bits=2048) == pair  # reused, not replaced
True
>>> tmp.cleanup()
"""
from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
import shlex
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from helpers.errors import KeyFileError

#: Key size of the AWS tutorial's ``openssl genrsa -out private-key.pem 4096``.
DEFAULT_BITS = 4096
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


@dataclass(frozen=True)
class KeyPair:
    """Where a token-signing key pair lives, plus its public key as PEM text."""

    private_key_path: Path
    public_key_path: Path
    public_key_pem: str
    bits: int

    def __repr__(self) -> str:
        # Paths and size only: no key material, public or private.
        return (
            f"KeyPair(private_key_path={str(self.private_key_path)!r}, "
            f"public_key_path={str(self.public_key_path)!r}, bits={self.bits})"
        )


def key_paths(directory: Path, name: str = "token-signing") -> tuple[Path, Path]:
    """The (private, public) file paths for the pair called ``name`` in ``directory``."""
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"Key pair name {name!r} is not usable as a file name: use 1-64 letters, "
            "digits, '-' or '_'."
        )
    directory = Path(directory)
    return directory / f"{name}-private-key.pem", directory / f"{name}-public-key.pem"


def generate_key_pair(
    directory: Path, name: str = "token-signing", bits: int = DEFAULT_BITS
) -> KeyPair:
    """Create an RSA key pair in ``directory``, or reuse the one already there.

    Reuse needs the existing private key to be owner-only, to have ``bits`` bits
    and to match the public key file; otherwise :class:`KeyFileError` says what to
    fix. A private key without its public key file gets the public file written
    again; a public key without its private key is refused (it cannot sign).
    """
    private_path, public_path = key_paths(directory, name)
    if private_path.exists() or public_path.exists():
        if not private_path.exists():
            raise KeyFileError(
                f"Found the public key {public_path} but not its private key "
                f"{private_path}, so no token can be signed for it. Delete {public_path} "
                "and run this cell again to make a new pair (then give the authorizer "
                "the new public key).",
                path=private_path,
            )
        if not public_path.exists():
            private_key = _read_private_key(private_path)
            _write_public_key(public_path, private_key.public_key())
        pair = load_key_pair(directory, name)
        if pair.bits != bits:
            raise KeyFileError(
                f"The existing key {private_path} has {pair.bits} bits, not the "
                f"{bits} asked for. Delete {private_path} and {public_path} to make a "
                f"new {bits}-bit pair, or ask for bits={pair.bits}.",
                path=private_path,
            )
        return pair

    _make_private_directory(private_path.parent)
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private_pem = private_key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )
    _write_new_file(private_path, private_pem, mode=0o600)
    _write_public_key(public_path, private_key.public_key())
    return load_key_pair(directory, name)


def load_key_pair(directory: Path, name: str = "token-signing") -> KeyPair:
    """Load an existing pair, checking that the two files belong together."""
    private_path, public_path = key_paths(directory, name)
    private_key = _read_private_key(private_path)
    try:
        public_pem = public_path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise KeyFileError(
            f"Public key file {public_path} does not exist. Run the key-pair cell "
            "(generate_key_pair) to write it.",
            path=public_path,
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise KeyFileError(
            f"Cannot read public key file {public_path} ({error}). Delete it and run "
            "the key-pair cell again to rewrite it from the private key.",
            path=public_path,
        ) from None
    try:
        public_key = serialization.load_pem_public_key(public_pem.encode("ascii"))
    except (ValueError, UnsupportedAlgorithm):
        raise KeyFileError(
            f"{public_path} is not a PEM public key (it should start with "
            "'-----BEGIN PUBLIC KEY-----'). Delete it and run the key-pair cell again "
            "to rewrite it from the private key.",
            path=public_path,
        ) from None
    if public_key.public_numbers() != private_key.public_key().public_numbers():
        raise KeyFileError(
            f"{public_path} is not the public half of {private_path}: tokens signed "
            "with this private key would not verify. Delete both files and run the "
            "key-pair cell again to make a matching pair.",
            path=public_path,
        )
    return KeyPair(private_path, public_path, public_pem, private_key.key_size)


def sign_token(private_key_path: Path, token: str) -> str:
    """Base64 RSASSA-PKCS1-v1_5 SHA-256 signature of the token's UTF-8 bytes.

    Same bytes as ``echo -n TOKEN | openssl dgst -sha256 -sign KEY | openssl base64 -A``:
    standard base64 alphabet, one line, no newline.
    """
    private_key = _read_private_key(Path(private_key_path))
    signature = private_key.sign(token.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode("ascii")


def verify_signature(public_key_pem: str, token: str, signature: str) -> bool:
    """True when ``signature`` is a valid signature of ``token``: IoT Core's own check."""
    public_key = serialization.load_pem_public_key(public_key_pem.encode("ascii"))
    try:
        raw = base64.b64decode(signature, validate=True)
        public_key.verify(raw, token.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, binascii.Error):
        return False
    return True


def tamper(signature: str) -> str:
    """The same signature with its middle character changed: still base64, no longer valid.

    Deterministic, so a notebook's output does not change between runs. A
    character in the middle carries six bits of the signature, so the decoded
    bytes always change (the last characters may carry padding bits instead).
    """
    try:
        base64.b64decode(signature, validate=True)
    except binascii.Error:
        raise ValueError(f"{signature!r} is not standard base64.") from None
    if len(signature) < 8:
        raise ValueError("The signature is too short to tamper with (expected base64 of a signature).")
    middle = len(signature) // 2
    flipped = _B64_ALPHABET[(_B64_ALPHABET.index(signature[middle]) + 1) % 64]
    return signature[:middle] + flipped + signature[middle + 1:]


def openssl_commands(key_pair: KeyPair, token: str) -> dict[str, str]:
    """The ``openssl`` lines that do what this module does, with the real paths.

    For display. Running ``generate`` again would overwrite the private key.
    """
    private = shlex.quote(str(key_pair.private_key_path))
    public = shlex.quote(str(key_pair.public_key_path))
    return {
        "generate": f"openssl genrsa -out {private} {key_pair.bits}",
        "check_private": f"openssl rsa -check -in {private} -noout",
        "public": f"openssl rsa -in {private} -pubout -out {public}",
        "check_public": f"openssl pkey -inform PEM -pubin -in {public} -noout",
        "sign": (
            f"echo -n {shlex.quote(token)} | openssl dgst -sha256 -sign {private} "
            "| openssl base64 -A"
        ),
    }


def _read_private_key(path: Path) -> rsa.RSAPrivateKey:
    """Load a private key after checking it exists, is owner-only and is RSA."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        raise KeyFileError(
            f"Private key file {path} does not exist. Run the key-pair cell "
            "(generate_key_pair) first.",
            path=path,
        ) from None
    if mode & 0o077:
        raise KeyFileError(
            f"Private key file {path} can be read by other users (mode {mode:04o}). "
            f"Run `chmod 600 {shlex.quote(str(path))}` if nobody else could have "
            "copied it; otherwise delete the key pair and make a new one.",
            path=path,
        )
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm, OSError):
        # The exception text may quote the file: never show it.
        raise KeyFileError(
            f"{path} is not an unencrypted PEM private key. Delete it (and its "
            "public key) and run the key-pair cell again to make a new pair.",
            path=path,
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KeyFileError(
            f"{path} holds a {type(key).__name__}, but token signing needs an RSA key. "
            "Delete the pair and run the key-pair cell again.",
            path=path,
        )
    return key


def _write_public_key(path: Path, public_key: rsa.RSAPublicKey) -> None:
    pem = public_key.public_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PublicFormat.SubjectPublicKeyInfo,
    )
    _write_new_file(path, pem, mode=0o644)


def _write_new_file(path: Path, data: bytes, mode: int) -> None:
    """Write through an exclusive temporary file created with ``mode``, then rename.

    The file has its final mode from the moment it exists, and the final name
    only ever holds complete content.
    """
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)  # os.open's mode was narrowed by the umask
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _make_private_directory(directory: Path) -> None:
    """Create ``directory`` (and parents) with mode 0700; leave an existing one alone."""
    if directory.is_dir():
        return
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)  # mkdir's mode is narrowed by the umask
