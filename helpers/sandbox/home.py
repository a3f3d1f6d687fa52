"""The sandbox home: owner-only on disk, and the one key pair it accepts.

A home holds what must not leak to other users of a shared machine: the CA and
server private keys, the state database (function code, environment variables),
logs, and the home's own credentials. So:

- :func:`secure_home` makes the home ``0700`` and everything in it owner-only
  (files ``0600``, directories ``0700``; executable bits kept as ``0700``), at every
  start, on an existing home too; ``serve`` also runs with ``umask 077`` so new
  files (SQLite's WAL and shared-memory files included) are born owner-only.
- :func:`home_credentials` returns the home's long-term key pair, generating it on
  first use: an access key id matching ``^SANDBOX[A-Z0-9]{13}$`` and a random
  40-character secret, in ``credentials.json`` (``0600``). Nothing else is accepted
  by the sandbox (besides temporary credentials it issues to Lambda functions), so
  another local user cannot act in someone else's sandbox.

>>> import tempfile, pathlib
>>> h = pathlib.Path(tempfile.mkdtemp()) / "home"
>>> secure_home(h); c = home_credentials(h)
>>> oct(h.stat().st_mode & 0o777), oct((h / CREDENTIALS_FILE).stat().st_mode & 0o777)
('0o700', '0o600')
>>> home_credentials(h) == c and len(c.secret_access_key) == 40
True
"""
from __future__ import annotations

import json
import os
import secrets
import stat
import string
from pathlib import Path

from helpers.targets import SANDBOX_KEY_PREFIX

from .core import ACCESS_KEY_ID_RE, ACCOUNT_ID
from .sigv4 import Credential

CREDENTIALS_FILE = "credentials.json"
#: The learner's IAM user in the documentation account (what GetCallerIdentity answers).
USER_NAME = "sandbox-learner"
#: IAM user ids start with AIDA; this one is fixed and is not an access key id (AKIA...).
USER_ID = "AIDASANDBOXLEARNER001"
_ALPHABET = string.ascii_uppercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits + "+/"


class HomeError(Exception):
    """The home cannot be used; the message names the path and what to do."""


def secure_home(home: Path) -> None:
    """Create ``home`` if needed and make it and everything in it owner-only. Raises HomeError."""
    home = Path(home)
    try:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        _chmod(home, 0o700)
        for root, dirs, files in os.walk(home):
            for name in dirs:
                _chmod(Path(root) / name, 0o700)
            for name in files:
                path = Path(root) / name
                st = path.lstat()
                if stat.S_ISREG(st.st_mode):
                    _chmod(path, 0o700 if st.st_mode & 0o100 else 0o600)
    except PermissionError as exc:
        raise HomeError(f"The sandbox home {home} cannot be written ({exc.strerror}: {exc.filename}). Make it "
                        "yours (chown), or choose another home with --state-dir DIR or IOT_SANDBOX_HOME.") from None
    except OSError as exc:
        raise HomeError(f"The sandbox home {home} cannot be used ({exc.strerror}: {exc.filename}). Choose another "
                        "home with --state-dir DIR or IOT_SANDBOX_HOME.") from None
    if not os.access(home, os.W_OK | os.X_OK):
        raise HomeError(f"The sandbox home {home} cannot be written. Make it yours (chown), or choose another home "
                        "with --state-dir DIR or IOT_SANDBOX_HOME.")


def _chmod(path: Path, mode: int) -> None:
    st = path.lstat()
    if not stat.S_ISLNK(st.st_mode) and stat.S_IMODE(st.st_mode) != mode:
        os.chmod(path, mode)


def _credential(doc: dict) -> Credential:
    return Credential(doc["access_key_id"], doc["secret_access_key"],
                      arn=f"arn:aws:iam::{ACCOUNT_ID}:user/{USER_NAME}", user_id=USER_ID)


def read_credentials(home: Path) -> Credential | None:
    """The home's key pair, or None when it has none (yet)."""
    path = Path(home) / CREDENTIALS_FILE
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except PermissionError:
        raise HomeError(f"{path} cannot be read: it belongs to another user's sandbox. Use your own home "
                        "(--state-dir DIR or IOT_SANDBOX_HOME).") from None
    except (OSError, ValueError):
        raise HomeError(f"{path} is damaged. Delete it and restart the sandbox (python -m helpers.sandbox stop; "
                        "then start): a new key pair is made, and the exported settings change.") from None
    if not (isinstance(doc, dict) and ACCESS_KEY_ID_RE.match(str(doc.get("access_key_id")))
            and isinstance(doc.get("secret_access_key"), str) and len(doc["secret_access_key"]) >= 20):
        raise HomeError(f"{path} is damaged. Delete it and restart the sandbox (python -m helpers.sandbox stop; "
                        "then start): a new key pair is made, and the exported settings change.")
    return _credential(doc)


def home_credentials(home: Path) -> Credential:
    """The home's key pair, made on first use (atomically: two starts at once get the same pair)."""
    found = read_credentials(home)
    if found is not None:
        return found
    doc = {"access_key_id": SANDBOX_KEY_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(13)),
           "secret_access_key": "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(40))}
    path = Path(home) / CREDENTIALS_FILE
    tmp = Path(home) / f".{CREDENTIALS_FILE}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(doc, fh)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # fails if another start made one meanwhile: then that one is the pair
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)
    return read_credentials(home)


def runtime_dir(home: Path) -> Path:
    """Where the running sandbox unpacks function code: outside the home, owner-only, fresh at every start.

    ``$XDG_RUNTIME_DIR`` (or the temporary directory) ``/iot-sandbox-UID/<hash of the home>``, so a
    function's ``LAMBDA_TASK_ROOT`` has no path up into the home (its keys, database and
    credentials), which the workers' jail also hides. Raises HomeError when the directory is
    not this user's alone (someone else made it first).
    """
    import hashlib
    import shutil
    import tempfile

    base = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()) / f"iot-sandbox-{os.getuid()}"
    try:
        base.mkdir(mode=0o700, exist_ok=True)
        st = base.lstat()
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            raise HomeError(f"{base} is not a directory of yours: remove it (someone else made it), then start "
                            "the sandbox again.")
        _chmod(base, 0o700)
        target = base / hashlib.sha256(str(Path(home).resolve()).encode()).hexdigest()[:16]
        shutil.rmtree(target, ignore_errors=True)  # code of a previous run: unpacked again from the database
        target.mkdir(mode=0o700)
    except OSError as exc:
        raise HomeError(f"The sandbox cannot use {base} for function code ({exc.strerror}). Set TMPDIR to a "
                        "directory of yours and start again.") from None
    return target
