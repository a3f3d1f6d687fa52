"""The errors the workbook helpers raise on purpose, all under one root.

Every message says what happened and what to do next, so that a learner who
meets one in a notebook can act on the message alone. Code that wants to catch
"anything the workbook raised on purpose" catches :class:`WorkbookError`.

Usage:

>>> error = NotReadyError("authorizer_arn", "03-create-authorizer")
>>> print(error)
authorizer_arn is not recorded yet: run notebook 03-create-authorizer first, then run this cell again.
>>> error.notebook
'03-create-authorizer'
>>> isinstance(KeyFileError("x"), WorkbookError)
True
"""
from __future__ import annotations

from pathlib import Path


class WorkbookError(Exception):
    """Root of every error the workbook helpers raise on purpose."""


class NotReadyError(WorkbookError):
    """A step needs something that an earlier notebook creates, and it is not there yet."""

    def __init__(self, missing: str, notebook: str):
        self.missing = missing
        self.notebook = notebook
        super().__init__(
            f"{missing} is not recorded yet: run notebook {notebook} first, "
            "then run this cell again."
        )


class StateFileError(WorkbookError):
    """The workbook state file cannot be read or written."""

    def __init__(self, message: str, path: Path | None = None):
        self.path = path
        super().__init__(message)


class KeyFileError(WorkbookError):
    """A token-signing key file is missing, damaged, unprotected or does not match its pair."""

    def __init__(self, message: str, path: Path | None = None):
        self.path = path
        super().__init__(message)


def show_briefly(shell=None) -> None:
    """In Jupyter/IPython, show a :class:`WorkbookError` as its message, without a stack trace.

    The cell still fails (so a later cell does not run on bad assumptions, and
    nbval's ``raises-exception`` tag still sees an error). Other exceptions keep
    their full traceback. Outside IPython it does nothing. It returns nothing, so a
    notebook cell that ends with it shows no output.
    """
    if shell is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return
        shell = get_ipython()
    if shell is None:
        return

    def message_only(shell, etype, value, tb, tb_offset=None):
        # IPython's own short form: the error line, plus a hint that %tb shows the rest.
        shell.showtraceback((etype, value, tb), exception_only=True)

    shell.set_custom_exc((WorkbookError,), message_only)


class ConfigurationError(WorkbookError):
    """A setting (such as the WORKBOOK_TARGET environment variable) has a value the workbook cannot use."""
