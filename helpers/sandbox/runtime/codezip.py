"""A function's code: the checks on an uploaded zip, and its unpacking into the directory the worker runs in.

The Lambda service calls :func:`validate_code_zip` at CreateFunction and
UpdateFunctionCode; the engine unpacks each ``code_sha256`` once
(:class:`CodeCache`), refusing entries that would land outside that directory.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import stat
import threading
import uuid
import zipfile
from io import BytesIO
from pathlib import Path

from .spec import FunctionSpec


class CodeZipError(ValueError):
    """The uploaded code is not a zip the sandbox can unpack safely."""


#: Lambda's deployment package limit: "250 MB (unzipped)", as the bytes its error message names.
MAX_UNZIPPED_BYTES = 262144000


def validate_code_zip(code_zip: bytes) -> None:
    """Raise :class:`CodeZipError` unless ``code_zip`` is a zip the sandbox can unpack safely and fully.

    Refused: unreadable zips; entries with absolute paths or ``..``; symbolic links;
    entries that conflict (the same path twice, or a file where another entry needs a
    directory, like ``a`` then ``a/b``); more than 250 MB unzipped (Lambda's limit,
    counted from the sizes the entries declare). The Lambda service calls this at
    CreateFunction/UpdateFunctionCode and answers ``InvalidParameterValueException``.
    """
    try:
        with zipfile.ZipFile(BytesIO(code_zip)) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError):
        raise CodeZipError("Could not unzip uploaded file. Please check your file, then try to upload again.") \
            from None
    total = 0
    files: set[str] = set()
    dirs: set[str] = set()
    for info in infos:
        _check_member(info.filename)
        if stat.S_ISLNK(info.external_attr >> 16):
            raise CodeZipError(f"Could not unzip uploaded file: the entry {info.filename!r} is a symbolic link, "
                               "which the sandbox does not unpack. Zip the file itself (zip without -y).")
        total += info.file_size
        parts = [p for p in info.filename.replace("\\", "/").split("/") if p not in ("", ".")]
        path = "/".join(parts)
        parents = {"/".join(parts[:i]) for i in range(1, len(parts))}
        is_dir = info.is_dir()
        clash = (path in files or (not is_dir and path in dirs) or (parents & files))
        if clash:
            raise CodeZipError(f"Could not unzip uploaded file: the entry {info.filename!r} conflicts with another "
                               "entry of the same path (a file and a directory, or the same file twice). Zip each "
                               "path once.")
        dirs |= parents
        (dirs if is_dir else files).add(path)
    if total > MAX_UNZIPPED_BYTES:
        raise CodeZipError(f"Unzipped size must be smaller than {MAX_UNZIPPED_BYTES} bytes")


def _check_member(name: str) -> None:
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
        raise CodeZipError(f"Could not unzip uploaded file: the entry {name!r} points outside the "
                           "function's directory. Zip the files with paths relative to the code root.")

def unpack_code(code_zip: bytes, target: Path) -> None:
    """Unzip ``code_zip`` into the new directory ``target`` (validated first; all or nothing, by a rename)."""
    validate_code_zip(code_zip)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".unzip-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        root = staging.resolve()
        with zipfile.ZipFile(BytesIO(code_zip)) as zf:
            for info in zf.infolist():
                destination = (staging / info.filename).resolve()
                if destination != root and root not in destination.parents:
                    raise CodeZipError(f"Could not unzip uploaded file: the entry {info.filename!r} points "
                                       "outside the function's directory.")
                zf.extract(info, staging)
                mode = (info.external_attr >> 16) & 0o777
                if mode & 0o111 and not info.is_dir():
                    destination.chmod(destination.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


class CodeCache:
    """Each function's code unpacked once per ``code_sha256`` under ``root``, shared by every function with it."""

    def __init__(self, root: Path):
        self.root = root
        self._dirs: dict[str, Path] = {}
        self._lock = threading.Lock()

    def directory(self, spec: FunctionSpec) -> Path:
        """The directory holding ``spec``'s unpacked code (unpacked now if it is not yet)."""
        with self._lock:
            ready = self._dirs.get(spec.code_sha256)
            if ready is not None:
                return ready
            # CodeSha256 is base64 (may hold "/"): name the directory by a hash of it.
            target = self.root / hashlib.sha256(spec.code_sha256.encode()).hexdigest()[:32]
            if not target.is_dir():
                unpack_code(spec.code_zip, target)
            self._dirs[spec.code_sha256] = target
            return target
