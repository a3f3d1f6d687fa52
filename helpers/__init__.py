"""The workbook's helpers. On Windows itself they cannot run (the sandbox needs POSIX): say so, once."""
import sys as _sys
from pathlib import Path as _Path

if _sys.platform == "win32":  # before any submodule imports fcntl or os.killpg and fails with a traceback
    from .host import problem as _problem

    raise ImportError(_problem(__file__, system="Windows"))

#: The checkout: the folder that holds ``helpers/``, ``notebooks/`` and ``functions/``.
REPO_ROOT = _Path(__file__).resolve().parent.parent
