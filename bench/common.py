"""What the benchmarks share: deploying the workbook's authorizer function behind signing authorizers."""
from __future__ import annotations

import base64
import io
import json
import zipfile

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from helpers.workbook import FUNCTION_DIR, zip_function

TRUST = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                            "Principal": {"Service": "lambda.amazonaws.com"}}]})
TOKEN = "tokenKeyValue"


def deploy(settings, authorizers: dict[str, bool], mqtt_authorizer: tuple[str, str] | None = None) -> str:
    """Role, the workbook's function, and one authorizer per name (value: enableCachingForHttp), each allowed
    to invoke it; with ``mqtt_authorizer=(name, handler source)`` also that function behind its own authorizer
    (same key). Returns the signature of TOKEN made with the authorizers' key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    iam, lam, iot = settings.client("iam"), settings.client("lambda"), settings.client("iot")
    role = iam.create_role(RoleName="bench-role", AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]
    fn = lam.create_function(FunctionName="bench-fn", Runtime="python3.12", Role=role,
                             Handler="lambda_function.lambda_handler",
                             Code={"ZipFile": zip_function(FUNCTION_DIR)})["FunctionArn"]
    lam.get_waiter("function_active_v2").wait(FunctionName="bench-fn")
    for name, caching in authorizers.items():
        arn = iot.create_authorizer(authorizerName=name, authorizerFunctionArn=fn, tokenKeyName="tokenKeyName",
                                    tokenSigningPublicKeys={"FirstKey": pem}, status="ACTIVE",
                                    enableCachingForHttp=caching)["authorizerArn"]
        lam.add_permission(FunctionName="bench-fn", StatementId=name, Action="lambda:InvokeFunction",
                           Principal="iot.amazonaws.com", SourceArn=arn)
    if mqtt_authorizer is not None:
        name, source = mqtt_authorizer
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("lambda_function.py", source)
        mfn = lam.create_function(FunctionName=f"{name}-fn", Runtime="python3.12", Role=role,
                                  Handler="lambda_function.lambda_handler",
                                  Code={"ZipFile": buf.getvalue()})["FunctionArn"]
        lam.get_waiter("function_active_v2").wait(FunctionName=f"{name}-fn")
        arn = iot.create_authorizer(authorizerName=name, authorizerFunctionArn=mfn, tokenKeyName="tokenKeyName",
                                    tokenSigningPublicKeys={"FirstKey": pem}, status="ACTIVE")["authorizerArn"]
        lam.add_permission(FunctionName=f"{name}-fn", StatementId=name, Action="lambda:InvokeFunction",
                           Principal="iot.amazonaws.com", SourceArn=arn)
    return base64.b64encode(key.sign(TOKEN.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()
