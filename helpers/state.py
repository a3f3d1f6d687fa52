"""The workbook's memory between notebooks: one small JSON file.

Each notebook records what it created (ARNs, key paths, the target) so that the
next notebook can pick it up, and so that the clean-up notebook knows what to
delete. The file lives at ``<repo>/.workbook/state.json`` (git-ignored), or in
the directory named by the ``WORKBOOK_STATE_DIR`` environment variable.

What it holds:

- **values**, read and written like a dictionary: ``state["function_arn"]``,
  ``"function_arn" in state``, ``state.get(key)``, ``state.set(key=value)``.
  Dictionary style rather than attributes, so that a value's name can never clash
  with a method (``names``, ``region``, ``target`` ...). ``set`` saves at once;
  :class:`pathlib.Path` values are stored as strings.
- a **suffix** of 6 random lowercase letters and digits, made when the file is
  created. It goes into every resource name (:attr:`WorkbookState.names`), so two
  learners sharing an AWS account, or one learner running the workbook twice,
  do not collide.
- the **region** (``us-west-2`` unless set) and the **target**: ``sandbox`` or
  ``aws``. The ``WORKBOOK_TARGET`` environment variable overrides the file.
- the **resources** created, in creation order, for clean-up.

Reads see changes that another notebook saved in the meantime, and every save
reads the file first, so two open notebooks do not undo each other's values.
Saves are atomic (a temporary file, then ``os.replace``). A damaged file raises
:class:`StateFileError` naming the file and the fix; it is never replaced
silently.

Usage:

>>> import tempfile, pathlib
>>> tmp = tempfile.TemporaryDirectory()
>>> state = WorkbookState.load(pathlib.Path(tmp.name) / "state.json")
>>> state.set(function_arn="arn:aws:lambda:us-west-2:123456789012:function:f")
>>> state.require("function_arn")
'arn:aws:lambda:us-west-2:123456789012:function:f'
>>> state.require("authorizer_arn", notebook="03-create-authorizer")
Traceback (most recent call last):
...
helpers.errors.NotReadyError: authorizer_arn is not recorded yet: run notebook 03-create-authorizer first, then run this cell again.
>>> state.names.function == "custom-auth-function-" + state.suffix
True
>>> state.record_resource("lambda-function", state.names.function)
>>> [kind for kind, _ in state.resources()]
['lambda-function']
>>> tmp.cleanup()
"""
from __future__ import annotations

import json
import os
import re
import secrets
import string
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from helpers import REPO_ROOT
from helpers.errors import NotReadyError, StateFileError
from helpers.targets import DEFAULT_TARGET, TARGETS, check_target

STATE_DIR_ENV = "WORKBOOK_STATE_DIR"
TARGET_ENV = "WORKBOOK_TARGET"
STATE_FILE_NAME = "state.json"
DEFAULT_REGION = "us-west-2"
FORMAT_VERSION = 1

_SUFFIX_ALPHABET = string.ascii_lowercase + string.digits
#: The suffix every workbook resource name ends in (:func:`new_suffix`).
SUFFIX_RE = re.compile(r"[a-z0-9]{6}")
#: Each resource name is its prefix and the suffix.
NAME_PREFIXES = {
    "function": "custom-auth-function-",
    "role": "custom-auth-function-role-",
    "authorizer": "my-new-authorizer-",
    "statement_id": "Id-",
    "logging_role": "custom-auth-iot-logging-role-",
}

#: AWS's rules for each name (pattern, maximum length), from the botocore models:
#: iot AuthorizerName, lambda FunctionName (name form), iam roleNameType,
#: lambda StatementId.
NAME_RULES = {
    "authorizer": (re.compile(r"[\w=,@-]+"), 128),
    "function": (re.compile(r"[a-zA-Z0-9-_]+"), 64),
    "role": (re.compile(r"[\w+=,.@-]+"), 64),
    "statement_id": (re.compile(r"([a-zA-Z0-9-_]+)"), 100),
    "logging_role": (re.compile(r"[\w+=,.@-]+"), 64),
}


@dataclass(frozen=True)
class Names:
    """The workbook's AWS resource names, each ending in the state's suffix."""

    function: str
    role: str
    authorizer: str
    statement_id: str
    logging_role: str

    @classmethod
    def for_suffix(cls, suffix: str) -> "Names":
        names = cls(**{field: prefix + suffix for field, prefix in NAME_PREFIXES.items()})
        for field, (pattern, limit) in NAME_RULES.items():
            value = getattr(names, field)
            if not pattern.fullmatch(value) or len(value) > limit:
                raise ValueError(f"{field} name {value!r} breaks AWS's rule {pattern.pattern} (max {limit}).")
        return names


def default_path() -> Path:
    """``$WORKBOOK_STATE_DIR/state.json`` if the variable is set, else ``<repo>/.workbook/state.json``."""
    directory = os.environ.get(STATE_DIR_ENV)
    base = Path(directory).expanduser() if directory else REPO_ROOT / ".workbook"
    return base / STATE_FILE_NAME


def new_suffix() -> str:
    """Six random lowercase letters and digits."""
    return "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(6))


class WorkbookState:
    """The shared state file. Create it with :meth:`load`, not the constructor."""

    def __init__(self, path: Path, data: dict[str, Any]):
        self.path = Path(path)
        self._data = data
        self._seen = self._stamp()

    # --- loading and saving -------------------------------------------------

    @classmethod
    def load(cls, path: Path | None = None, reset_corrupt: bool = False) -> "WorkbookState":
        """Open the state file, creating it (with a fresh suffix) if it does not exist.

        A damaged file raises :class:`StateFileError`. With ``reset_corrupt=True``
        it is renamed to ``state.json.bad-<UTC timestamp>`` instead, and a fresh
        state takes its place.
        """
        path = Path(path) if path is not None else default_path()
        try:
            data = _read(path)
        except StateFileError:
            if not reset_corrupt:
                raise
            _set_aside(path)
            data = None
        if data is None:
            data = {"format": FORMAT_VERSION, "values": {"suffix": new_suffix()}, "resources": []}
            state = cls(path, data)
            state.save()
            return state
        return cls(path, data)

    def save(self) -> None:
        """Write the state atomically: a temporary file in the same folder, then ``os.replace``."""
        directory = self.path.parent
        try:
            if not directory.is_dir():
                directory.mkdir(mode=0o700, parents=True, exist_ok=True)
                directory.chmod(0o700)  # keys may live next to the state: owner only
            fd, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=directory)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    json.dump(self._data, handle, indent=2, sort_keys=True)
                    handle.write("\n")
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temporary, self.path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except OSError as error:
            raise StateFileError(
                f"Cannot write the workbook state file {self.path} ({error.strerror or error}). "
                f"Check that its folder is writable, or point {STATE_DIR_ENV} at a folder that is.",
                path=self.path,
            ) from None
        self._seen = self._stamp()

    def reload(self) -> None:
        """Read the file again if another notebook changed it since we last looked."""
        stamp = self._stamp()
        if stamp is None or stamp == self._seen:
            return  # unchanged, or deleted: keep what we have until the next save
        data = _read(self.path)
        if data is not None:
            self._data = data
        self._seen = stamp

    # --- values -------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        """The value saved under ``key``, or ``default``."""
        self.reload()
        return self._data["values"].get(key, default)

    def set(self, **values: Any) -> None:
        """Save ``values`` (``Path`` objects become strings; ``None`` removes the key). JSON values only."""
        removed = [key for key, value in values.items() if value is None]
        if "suffix" in removed:
            raise ValueError("the suffix cannot be removed: every resource name depends on it.")
        cleaned = {key: str(value) if isinstance(value, Path) else value
                   for key, value in values.items() if value is not None}
        if "suffix" in cleaned and not (isinstance(cleaned["suffix"], str) and SUFFIX_RE.fullmatch(cleaned["suffix"])):
            raise ValueError("suffix must be 6 lowercase letters or digits.")
        if "target" in cleaned:
            cleaned["target"] = check_target(cleaned["target"], "the target value")
        try:
            json.dumps(cleaned)
        except (TypeError, ValueError) as error:
            raise TypeError(f"Only JSON values can be saved in the workbook state: {error}") from None
        def change(data: dict) -> None:
            data["values"].update(cleaned)
            for key in removed:
                data["values"].pop(key, None)

        self._update(change)

    def require(self, key: str, notebook: str = "03-create-authorizer") -> Any:
        """The value under ``key``; :class:`NotReadyError` naming ``notebook`` if it is missing."""
        value = self.get(key)
        if value is None:
            raise NotReadyError(key, notebook)
        return value

    def require_all(self, **needed: str) -> None:
        """Check every ``key=notebook`` at once; one :class:`NotReadyError` naming *all* missing notebooks.

        >>> import tempfile, pathlib
        >>> tmp = tempfile.TemporaryDirectory()
        >>> st = WorkbookState.load(pathlib.Path(tmp.name) / "state.json")
        >>> st.require_all(token="05-test-invoke", authorizer_arn="03-create-authorizer")
        Traceback (most recent call last):
        ...
        helpers.errors.NotReadyError: token, authorizer_arn are not recorded yet: run notebooks 03-create-authorizer, 05-test-invoke first (in that order), then run this cell again.
        >>> tmp.cleanup()
        """
        missing = {key: notebook for key, notebook in needed.items() if self.get(key) is None}
        if not missing:
            return
        notebooks = sorted(set(missing.values()))
        if len(notebooks) == 1 and len(missing) == 1:
            raise NotReadyError(next(iter(missing)), notebooks[0])
        error = NotReadyError(", ".join(missing), notebooks[0])
        error.notebooks = notebooks
        error.args = (f"{', '.join(missing)} are not recorded yet: run notebook{'s' if len(notebooks) > 1 else ''} "
                      f"{', '.join(notebooks)} first{' (in that order)' if len(notebooks) > 1 else ''}, "
                      "then run this cell again.",)
        raise error

    def __getitem__(self, key: str) -> Any:
        self.reload()
        try:
            return self._data["values"][key]
        except KeyError:
            raise KeyError(f"{key!r} is not in the workbook state ({self.path})") from None

    def __contains__(self, key: object) -> bool:
        self.reload()
        return key in self._data["values"]

    def __repr__(self) -> str:
        return f"WorkbookState(path={str(self.path)!r}, suffix={self.suffix!r}, target={self.target!r})"

    # --- derived settings ---------------------------------------------------

    @property
    def suffix(self) -> str:
        return self.get("suffix")

    @property
    def names(self) -> Names:
        """Resource names carrying this workbook's suffix."""
        return Names.for_suffix(self.suffix)

    @property
    def region(self) -> str:
        return self.get("region") or DEFAULT_REGION

    @property
    def target(self) -> str:
        """``sandbox`` or ``aws``: ``WORKBOOK_TARGET`` if set, else the file, else ``sandbox``."""
        from_env = os.environ.get(TARGET_ENV)
        if from_env:
            return check_target(from_env, f"the environment variable {TARGET_ENV}")
        return self.get("target") or DEFAULT_TARGET

    # --- clean-up bookkeeping -------------------------------------------------

    def record_resource(self, kind: str, resource_id: str) -> None:
        """Remember a created resource (once; the first recording keeps its place)."""
        entry = [str(kind), str(resource_id)]

        def add(data: dict) -> None:
            if entry not in data["resources"]:
                data["resources"].append(entry)

        self._update(add)

    def forget_resource(self, kind: str, resource_id: str) -> bool:
        """Drop a resource after deleting it. Returns whether it was recorded."""
        entry = [str(kind), str(resource_id)]
        removed = []

        def drop(data: dict) -> None:
            if entry in data["resources"]:
                data["resources"].remove(entry)
                removed.append(entry)

        self._update(drop)
        return bool(removed)

    def resources(self) -> list[tuple[str, str]]:
        """``(kind, id)`` pairs in the order they were created. Delete in reverse order."""
        self.reload()
        return [(kind, resource_id) for kind, resource_id in self._data["resources"]]

    # --- internals ------------------------------------------------------------

    def _update(self, change: Callable[[dict], None]) -> None:
        """Read-modify-write, so values saved meanwhile by another notebook survive."""
        self.reload()
        change(self._data)
        self.save()

    def _stamp(self) -> tuple[int, int, int] | None:
        # Every save replaces the file, so the inode changes even within one mtime tick.
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return None
        return info.st_ino, info.st_mtime_ns, info.st_size


def _fix_hint(path: Path) -> str:
    return (
        f"To start over, delete {path} (or call WorkbookState.load(reset_corrupt=True) to "
        "keep it aside as a .bad-<timestamp> file). Resources it recorded are not deleted "
        "from AWS: remove those by hand."
    )


def _read(path: Path) -> dict[str, Any] | None:
    """The file's content, checked; ``None`` if there is no file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise StateFileError(
            f"Cannot read the workbook state file {path} ({error}). {_fix_hint(path)}", path=path
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise StateFileError(
            f"The workbook state file {path} is not valid JSON (line {error.lineno}, column "
            f"{error.colno}: {error.msg}). {_fix_hint(path)}",
            path=path,
        ) from None
    problem = _problem_with(data)
    if problem:
        raise StateFileError(f"The workbook state file {path} is damaged: {problem}. {_fix_hint(path)}", path=path)
    return data


def _problem_with(data: Any) -> str | None:
    if not isinstance(data, dict):
        return "it does not hold a JSON object"
    if data.get("format") != FORMAT_VERSION:
        return f"its format is {data.get('format')!r}, expected {FORMAT_VERSION}"
    values = data.get("values")
    if not isinstance(values, dict):
        return "'values' is not an object"
    if not (isinstance(values.get("suffix"), str) and SUFFIX_RE.fullmatch(values["suffix"])):
        return "'suffix' is missing or is not 6 lowercase letters or digits"
    if values.get("target", DEFAULT_TARGET) not in TARGETS:
        return f"'target' is {values['target']!r}, not 'sandbox' or 'aws'"
    if not isinstance(values.get("region", DEFAULT_REGION), str):
        return "'region' is not a string"
    resources = data.get("resources")
    if not isinstance(resources, list) or not all(
        isinstance(entry, list) and len(entry) == 2 and all(isinstance(part, str) for part in entry)
        for entry in resources
    ):
        return "'resources' is not a list of [kind, id] pairs"
    return None


def _set_aside(path: Path) -> Path:
    """Rename a damaged state file to ``<name>.bad-<UTC timestamp>`` and return the new path."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.bad-{stamp}")
    counter = 1
    while target.exists():
        target = path.with_name(f"{path.name}.bad-{stamp}-{counter}")
        counter += 1
    try:
        os.replace(path, target)
    except OSError as error:
        raise StateFileError(
            f"Cannot move the damaged state file {path} aside ({error.strerror or error}). "
            f"Delete it by hand to start over.",
            path=path,
        ) from None
    return target
