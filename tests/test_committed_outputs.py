"""What the committed notebooks show: no secrets, no signatures, no machine paths, and widgets that say to run them."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))
#: An absolute path of a machine (POSIX home/work/tmp folders, macOS /Users, Windows drives).
MACHINE_PATH = re.compile(r"(?<![\w.~<])(/(home|work|tmp|Users|root|private|var/folders)/[^\s'\"]+|[A-Z]:\\\\Users\\\\)")
#: A base64 run as long as an RSA-2048+ signature (344+ characters); PEM keys wrap at 64, so they never match.
SIGNATURE = re.compile(r"[A-Za-z0-9+/]{300,}={0,2}")
SECRETS = [re.compile(p) for p in (r"-----BEGIN (RSA |EC )?PRIVATE KEY-----", r"aws_secret_access_key\s*=",
                                    r"\bAKIA[A-Z0-9]{16}\b", r"\bASIA[A-Z0-9]{16}\b",
                                    r"sandbox-local-secret-not-an-aws-credential")]


def output_texts(path: Path):
    nb = json.loads(path.read_text())
    for index, cell in enumerate(nb["cells"]):
        for output in cell.get("outputs", []):
            parts = [output.get("text", ""), output.get("evalue", ""), *output.get("traceback", [])]
            for mime, value in (output.get("data") or {}).items():
                if mime.startswith("image/") and mime != "image/svg+xml":
                    continue  # a base64-encoded picture (08's plot), not text: its letters are no signature
                parts.append(value if isinstance(value, str) else "".join(value) if isinstance(value, list) else "")
            text = "".join("".join(p) if isinstance(p, list) else p for p in parts)
            text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # terminal colours
            if text:
                yield index, text


@pytest.mark.skipif(not NOTEBOOKS, reason="no notebooks")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_outputs_hold_no_secret_signature_or_machine_path(path):
    for index, text in output_texts(path):
        assert not MACHINE_PATH.search(text), f"{path.name} cell {index}: {MACHINE_PATH.search(text).group(0)}"
        assert not SIGNATURE.search(text), f"{path.name} cell {index} shows a full token signature"
        for pattern in SECRETS:
            assert not pattern.search(text), f"{path.name} cell {index}: {pattern.pattern}"


def test_the_checks_catch_what_they_are_for():
    assert MACHINE_PATH.search("openssl genrsa -out /work/main/build/keys/k.pem")
    assert not MACHINE_PATH.search("openssl genrsa -out build/workbook-state/keys/k.pem")
    assert SIGNATURE.search("x" + "A" * 344 + "==")
    assert not SIGNATURE.search("MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAr4Pq1\nAAAA")
