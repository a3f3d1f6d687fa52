"""The workbook's two targets, and the marks that tell the sandbox's settings apart, without the sandbox.

``sandbox`` is the local stand-in (``helpers/sandbox``), ``aws`` a real account. The state file
records the target (``helpers/state.py``) and ``helpers/workbook.py`` opens it. The sandbox's CA
name and access-key prefix are defined here rather than in ``helpers/sandbox``, so that the aws
path can recognise sandbox settings left in its environment without importing the sandbox.

>>> check_target(" AWS ", "WORKBOOK_TARGET")
'aws'
>>> check_target("local", "The target")
Traceback (most recent call last):
...
helpers.errors.ConfigurationError: The target is 'local'; it must be 'sandbox' (the local stand-in) or 'aws' (your AWS account).
"""
from __future__ import annotations

from typing import Any

from helpers.errors import ConfigurationError

TARGETS = ("sandbox", "aws")
DEFAULT_TARGET = "sandbox"
#: The common name of the CA certificate each sandbox home issues (``helpers/sandbox/tls.py``).
SANDBOX_CA_NAME = "iot-custom-auth-workbook sandbox CA"
#: The sandbox's access key ids start with this (``helpers/sandbox/home.py`` generates one per home).
SANDBOX_KEY_PREFIX = "SANDBOX"


def check_target(value: Any, source: str) -> str:
    """``value`` as a target name (trimmed, lower case); :class:`ConfigurationError` naming ``source`` if it is none."""
    cleaned = str(value).strip().lower()
    if cleaned not in TARGETS:
        raise ConfigurationError(f"{source} is {value!r}; it must be 'sandbox' (the local stand-in) or 'aws' "
                                 "(your AWS account).")
    return cleaned
