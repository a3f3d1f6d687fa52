"""A local, offline stand-in for the AWS services the custom-authorizer tutorial uses.

Real HTTPS with SigV4, real Lambda handler processes, a real MQTT broker, state
in SQLite: the AWS CLI, boto3, curl and paho-mqtt work against it unchanged.
See ``helpers/sandbox/README.md`` for how it is built and what it covers.

    from helpers import sandbox
    settings = sandbox.ensure_running()
    settings.client("sts").get_caller_identity()["Account"]   # '123456789012'
"""
from .app import SandboxError
from .control import Settings, default_home, ensure_running, status, stop
from .core import ACCOUNT_ID, REGION

__all__ = ["ACCOUNT_ID", "REGION", "SandboxError", "Settings", "default_home", "ensure_running", "status", "stop"]
