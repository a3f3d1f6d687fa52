"""helpers.keys: key files, their permissions, and signatures identical to openssl's."""
from __future__ import annotations

import base64
import os
import shutil
import stat
import subprocess

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from helpers import keys
from helpers.errors import KeyFileError, WorkbookError

# Spelled in two parts so that secret scanners do not mistake this test file for a key.
PKCS8_HEADER = "-----BEGIN " + "PRIVATE KEY-----"

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")

TOKEN = "tokenKeyValue"


def mode_of(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def openssl_signature(private_key_path, token: str) -> bytes:
    """The AWS tutorial's own pipeline, run by a shell."""
    command = keys.openssl_commands(
        keys.KeyPair(private_key_path, private_key_path, "", 0), token
    )["sign"]
    return subprocess.run(["bash", "-c", command], check=True, capture_output=True).stdout


def cryptography_verifies(pair: keys.KeyPair, token: str, signature: str) -> bool:
    public_key = serialization.load_pem_public_key(pair.public_key_pem.encode())
    try:
        public_key.verify(base64.b64decode(signature), token.encode(), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return keys.generate_key_pair(tmp_path_factory.mktemp("k") / "keys", bits=2048)


def test_files_modes_and_formats(pair):
    assert mode_of(pair.private_key_path) == 0o600
    assert mode_of(pair.private_key_path.parent) == 0o700
    assert mode_of(pair.public_key_path) == 0o644
    assert pair.private_key_path.read_text().startswith(PKCS8_HEADER + "\n")
    assert pair.public_key_pem.startswith("-----BEGIN PUBLIC KEY-----\n")
    assert pair.public_key_pem.endswith("-----END PUBLIC KEY-----\n")
    assert pair.public_key_path.read_text() == pair.public_key_pem
    assert pair.bits == 2048
    assert not list(pair.private_key_path.parent.glob(".*.tmp"))


def test_private_key_is_owner_only_even_with_a_permissive_umask(tmp_path):
    previous = os.umask(0)
    try:
        made = keys.generate_key_pair(tmp_path / "open-umask", bits=2048)
    finally:
        os.umask(previous)
    assert mode_of(made.private_key_path) == 0o600
    assert mode_of(made.private_key_path.parent) == 0o700


def test_private_key_is_never_readable_by_others_while_written(tmp_path, monkeypatch):
    seen_modes = []
    real_open = os.open

    def spying_open(path, flags, mode=0o777, *args, **kwargs):
        fd = real_open(path, flags, mode, *args, **kwargs)
        if "private-key" in os.path.basename(path):
            seen_modes.append((flags, stat.S_IMODE(os.fstat(fd).st_mode)))
        return fd

    monkeypatch.setattr(keys.os, "open", spying_open)
    keys.generate_key_pair(tmp_path / "spy", bits=2048)
    assert seen_modes, "the private key must be created through os.open"
    for flags, mode in seen_modes:
        assert flags & os.O_EXCL and flags & os.O_CREAT
        assert mode & 0o077 == 0


@needs_openssl
def test_signature_matches_the_openssl_pipeline_byte_for_byte(pair):
    for token in (TOKEN, "allow", "ünïcødé token with spaces", ""):
        ours = keys.sign_token(pair.private_key_path, token)
        assert ours.encode("ascii") == openssl_signature(pair.private_key_path, token)


@needs_openssl
def test_4096_bit_default_matches_openssl_and_its_checks(tmp_path):
    big = keys.generate_key_pair(tmp_path / "big")
    assert big.bits == 4096
    assert keys.sign_token(big.private_key_path, TOKEN).encode() == openssl_signature(big.private_key_path, TOKEN)
    commands = keys.openssl_commands(big, TOKEN)
    for step in ("check_private", "check_public"):
        result = subprocess.run(["bash", "-c", commands[step]], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    assert "4096" in commands["generate"]


@needs_openssl
def test_displayed_openssl_commands_make_a_working_pair(tmp_path):
    target = keys.KeyPair(tmp_path / "private-key.pem", tmp_path / "public-key.pem", "", 2048)
    commands = keys.openssl_commands(target, TOKEN)
    for step in ("generate", "check_private", "public", "check_public"):
        result = subprocess.run(["bash", "-c", commands[step]], capture_output=True, text=True)
        assert result.returncode == 0, (step, result.stderr)
    public_pem = target.public_key_path.read_text()
    signature = subprocess.run(["bash", "-c", commands["sign"]], capture_output=True, check=True).stdout.decode()
    assert keys.verify_signature(public_pem, TOKEN, signature)


def test_paths_with_spaces_are_quoted_for_the_shell(tmp_path):
    spaced = keys.KeyPair(tmp_path / "my keys" / "a.pem", tmp_path / "my keys" / "b.pem", "", 4096)
    commands = keys.openssl_commands(spaced, "it's")
    assert f"'{tmp_path}/my keys/a.pem'" in commands["sign"]
    assert "echo -n 'it'\"'\"'s'" in commands["sign"]
    assert set(commands) == {"generate", "check_private", "public", "check_public", "sign"}


def test_signature_verifies_and_tamper_breaks_it(pair):
    signature = keys.sign_token(pair.private_key_path, TOKEN)
    assert "\n" not in signature
    assert cryptography_verifies(pair, TOKEN, signature)
    assert not cryptography_verifies(pair, "another token", signature)

    broken = keys.tamper(signature)
    assert broken != signature
    assert len(broken) == len(signature)
    assert sum(a != b for a, b in zip(broken, signature)) == 1
    assert base64.b64decode(broken, validate=True)  # still valid base64
    assert len(base64.b64decode(broken)) == len(base64.b64decode(signature))
    assert keys.tamper(signature) == broken  # deterministic
    assert not cryptography_verifies(pair, TOKEN, broken)
    assert not keys.verify_signature(pair.public_key_pem, TOKEN, broken)
    assert keys.verify_signature(pair.public_key_pem, TOKEN, signature)


@pytest.mark.parametrize("bad", ["not base64!", "abc"])
def test_tamper_rejects_what_is_not_a_signature(bad):
    with pytest.raises(ValueError):
        keys.tamper(bad)


def test_tamper_wraps_around_the_alphabet():
    assert keys.tamper("AAAA////AAAA") == "AAAA//A/AAAA"


def test_second_call_reuses_the_pair(pair):
    before = pair.private_key_path.read_bytes()
    again = keys.generate_key_pair(pair.private_key_path.parent, bits=2048)
    assert again == pair
    assert pair.private_key_path.read_bytes() == before
    assert keys.load_key_pair(pair.private_key_path.parent) == pair


def test_missing_public_key_is_rewritten_from_the_private_key(tmp_path):
    made = keys.generate_key_pair(tmp_path, bits=2048)
    made.public_key_path.unlink()
    assert keys.generate_key_pair(tmp_path, bits=2048) == made


def test_public_key_without_private_key_is_refused(tmp_path):
    made = keys.generate_key_pair(tmp_path, bits=2048)
    made.private_key_path.unlink()
    with pytest.raises(KeyFileError, match="not its private key"):
        keys.generate_key_pair(tmp_path, bits=2048)


def test_other_key_size_is_refused_not_replaced(tmp_path):
    made = keys.generate_key_pair(tmp_path, bits=2048)
    with pytest.raises(KeyFileError, match="2048 bits, not the 3072"):
        keys.generate_key_pair(tmp_path, bits=3072)
    assert keys.load_key_pair(tmp_path) == made


def test_mismatched_halves_are_refused(tmp_path):
    first = keys.generate_key_pair(tmp_path, name="first", bits=2048)
    second = keys.generate_key_pair(tmp_path, name="second", bits=2048)
    second.public_key_path.write_text(first.public_key_pem)
    with pytest.raises(KeyFileError, match="not the public half"):
        keys.load_key_pair(tmp_path, "second")


def test_unprotected_private_key_is_refused(tmp_path):
    made = keys.generate_key_pair(tmp_path, bits=2048)
    made.private_key_path.chmod(0o644)
    for call in (
        lambda: keys.load_key_pair(tmp_path),
        lambda: keys.generate_key_pair(tmp_path, bits=2048),
        lambda: keys.sign_token(made.private_key_path, TOKEN),
    ):
        with pytest.raises(KeyFileError, match="chmod 600"):
            call()
    assert mode_of(made.private_key_path) == 0o644  # reported, not silently changed


def test_repr_has_no_key_material(pair):
    text = repr(pair) + str(pair)
    assert "BEGIN" not in text and "KEY-----" not in text
    body = "".join(pair.public_key_pem.splitlines()[1:-1])
    assert body[:40] not in text
    private_body = "".join(pair.private_key_path.read_text().splitlines()[1:-1])
    assert private_body[:40] not in text
    assert str(pair.private_key_path) in text


def test_missing_files_raise_key_file_error(tmp_path):
    with pytest.raises(KeyFileError, match="does not exist") as caught:
        keys.load_key_pair(tmp_path / "nowhere")
    assert isinstance(caught.value, WorkbookError)
    with pytest.raises(KeyFileError, match="does not exist"):
        keys.sign_token(tmp_path / "nowhere.pem", TOKEN)


def test_corrupt_private_key_raises_without_showing_it(tmp_path):
    private_path, _ = keys.key_paths(tmp_path)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, f"{PKCS8_HEADER}\nSECRETSTUFF\n{PKCS8_HEADER.replace('BEGIN', 'END')}\n".encode())
    os.close(fd)
    with pytest.raises(KeyFileError, match="not an unencrypted PEM private key") as caught:
        keys.load_key_pair(tmp_path)
    assert "SECRETSTUFF" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_corrupt_public_key_raises(tmp_path):
    made = keys.generate_key_pair(tmp_path, bits=2048)
    made.public_key_path.write_text("garbage\n")
    with pytest.raises(KeyFileError, match="not a PEM public key"):
        keys.load_key_pair(tmp_path)


def test_bad_pair_name_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not usable as a file name"):
        keys.generate_key_pair(tmp_path, name="../escape", bits=2048)
