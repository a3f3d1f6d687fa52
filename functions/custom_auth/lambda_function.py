"""The custom authorizer's Lambda function: decides whether a client may talk to AWS IoT Core.

AWS IoT Core calls this function every time a client tries to connect or publish
through the custom authorizer (the notebooks deploy it as a zip; the handler string
is ``lambda_function.lambda_handler``). The function answers with an *authorization
response*: who the client is and which IoT policy applies to it. An HTTPS request
gets in only when its query string carries ``actionToken=allow``, so you can switch
between Allow and Deny by editing a URL. An MQTT device gets in with the right
password, and then may do only what a device needs.

What the function does, in order:

1. **Logs the event** with ``print``. Everything a Lambda function prints lands in
   its CloudWatch log group (or, in the sandbox, in the sandbox log), which is the
   first place to look when an authorizer misbehaves. The MQTT password, if there
   is one, is masked first: a log is no place for a credential.
2. **Finds the account and Region** it runs in, from ``context.invoked_function_arn``
   (``arn:aws:lambda:REGION:ACCOUNT:function:NAME``). Nothing is hard-coded, so the
   same code works in any account and Region, and in the sandbox.
3. **Decides the effect**:

   - no ``protocolData`` in the event: the call came from
     ``aws iot test-invoke-authorizer`` without contexts. There is no request to look
     at, so the answer is ``Deny``. The call still proves that IoT can reach the
     function and that the function answers.
   - ``protocolData.http.queryString`` contains ``actionToken`` equal to ``allow``
     (any letter case): ``Allow``. The query string may start with ``?`` (as in the
     AWS documentation's example event) or not; both are read the same way.
   - ``protocolData.mqtt`` is there: an MQTT device is connecting (notebook 09, MQTT devices). Its
     user name starts with the device's id (``sensor-1?x-amz-customauthorizer-name=...``);
     the password, which AWS IoT base64-encodes, must be ``DEVICE_PASSWORD``. Then the
     answer is a *least-privilege* Allow (see ``device_policy``): connect with the
     client id ``sensor-1`` only, publish and receive on ``devices/sensor-1/...`` only,
     subscribe to filters under it only. A wrong password, or an id that is not
     plain letters, digits, ``-`` and ``_``, gets the same Deny as a bad HTTP request.
   - anything else (another value, no ``actionToken``): ``Deny``.

4. **Builds the response** AWS IoT Core expects:

   - ``isAuthenticated``: ``True``. The client is *recognised*; what it may do is
     left to the policy. (``False`` would report the client as not authenticated,
     and IoT Core would refuse the request whatever the policy says.)
   - ``principalId``: a name for this client in logs. AWS only accepts letters and
     digits here (``[a-zA-Z0-9]{1,128}``), so it is ``customAuthDemo``: no dashes,
     underscores or spaces.
   - ``policyDocuments``: a list with one IoT policy. For HTTP, its single statement
     covers every IoT action (``iot:*``) on every IoT resource of this account and
     Region (``arn:aws:iot:REGION:ACCOUNT:*``) with the effect decided above. That is
     far too broad for production; the MQTT branch shows the narrow kind.
   - ``disconnectAfterInSeconds``: 3600. IoT Core closes the connection after an
     hour. AWS accepts 300 to 86,400 seconds.
   - ``refreshAfterInSeconds``: 600. IoT Core calls the function again every ten
     minutes to refresh the policy of a long-lived connection (also 300 to 86,400).
"""
import base64
import binascii
import hmac
import json
import re
from urllib.parse import parse_qs

#: The query-string parameter that carries the demo's yes/no switch.
ACTION_PARAMETER = "actionToken"
#: Letters and digits only: AWS rejects any other character in a principal id.
PRINCIPAL_ID = "customAuthDemo"
DISCONNECT_AFTER_SECONDS = 3600
REFRESH_AFTER_SECONDS = 600
#: The demo devices' password. A real function looks the device up (a table, a secret store).
DEVICE_PASSWORD = "workbook-demo-password"
#: A device id that is safe inside a policy ARN: no ``*``, ``?``, ``/``, ``+`` or ``#``.
DEVICE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def lambda_handler(event, context):
    """Entry point that AWS Lambda calls with the authorizer event."""
    print("Event received:", json.dumps(_masked(event), sort_keys=True))
    partition, region, account = _where_am_i(context.invoked_function_arn)

    protocol_data = event.get("protocolData")
    if protocol_data is None:
        print("No protocolData: a test-invoke-authorizer call, answering Deny.")
        response = authorization_response("Deny", partition, region, account)
    elif protocol_data.get("mqtt"):
        response = _mqtt_response(protocol_data["mqtt"], partition, region, account)
    else:
        effect = _effect_from_http(protocol_data.get("http"))
        response = authorization_response(effect, partition, region, account)
    print("Response:", json.dumps(response, sort_keys=True))
    return response


def _effect_from_http(http):
    """Allow only when the query string says actionToken=allow (any case)."""
    if not http or not http.get("queryString"):
        print("No HTTP query string to read, answering Deny.")
        return "Deny"
    query = http["queryString"]
    if query.startswith("?"):
        query = query[1:]
    values = parse_qs(query).get(ACTION_PARAMETER, [])
    print(f"{ACTION_PARAMETER} values in the query string: {values}")
    # Like URLSearchParams.get in the AWS tutorial: the first value counts.
    if values and values[0].lower() == "allow":
        return "Allow"
    return "Deny"


def _mqtt_response(mqtt, partition, region, account):
    """An MQTT device: its own narrow policy when the password is right, else Deny."""
    device = (mqtt.get("username") or "").split("?", 1)[0]
    try:
        password = base64.b64decode(mqtt.get("password") or "", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        password = None
    if not DEVICE_ID.fullmatch(device):
        print(f"User name does not start with a device id ({DEVICE_ID.pattern}), answering Deny.")
    elif password is None or not hmac.compare_digest(password, DEVICE_PASSWORD):
        print(f"Wrong password for device {device!r}, answering Deny.")
    else:
        print(f"Device {device!r} (client id {mqtt.get('clientId')!r}): least-privilege Allow.")
        response = authorization_response("Allow", partition, region, account)
        response["policyDocuments"] = [device_policy(device, partition, region, account)]
        return response
    return authorization_response("Deny", partition, region, account)


def device_policy(device, partition, region, account):
    """Connect as DEVICE only; publish, receive and subscribe under devices/DEVICE/ only."""
    arn = f"arn:{partition}:iot:{region}:{account}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{arn}:client/{device}"},
            {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"],
             "Resource": f"{arn}:topic/devices/{device}/*"},
            {"Effect": "Allow", "Action": "iot:Subscribe", "Resource": f"{arn}:topicfilter/devices/{device}/*"},
        ],
    }


def _where_am_i(function_arn):
    """Split arn:PARTITION:lambda:REGION:ACCOUNT:function:NAME into its parts."""
    parts = function_arn.split(":")
    if len(parts) < 7 or parts[0] != "arn" or parts[2] != "lambda":
        raise ValueError(
            f"invoked_function_arn {function_arn!r} is not a Lambda function ARN "
            "(expected arn:aws:lambda:REGION:ACCOUNT:function:NAME)."
        )
    return parts[1], parts[3], parts[4]


def authorization_response(effect, partition, region, account):
    """The answer AWS IoT Core expects from a custom authorizer function."""
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Action": "iot:*",
                "Effect": effect,
                "Resource": f"arn:{partition}:iot:{region}:{account}:*",
            }
        ],
    }
    return {
        "isAuthenticated": True,
        "principalId": PRINCIPAL_ID,
        "policyDocuments": [policy],
        "disconnectAfterInSeconds": DISCONNECT_AFTER_SECONDS,
        "refreshAfterInSeconds": REFRESH_AFTER_SECONDS,
    }


def _masked(event):
    """A copy of the event that is safe to log: the MQTT password is hidden."""
    mqtt = (event.get("protocolData") or {}).get("mqtt") or {}
    if "password" not in mqtt:
        return event
    copy = json.loads(json.dumps(event))
    copy["protocolData"]["mqtt"]["password"] = "***"
    return copy
