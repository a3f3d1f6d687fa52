"""What the benchmarks share: deploying the workbook's authorizer function behind signing authorizers."""
from __future__ import annotations

import base64
import json

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from helpers.workbook import FUNCTION_DIR, zip_function

TRUST = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                            "Principal": {"Service": "lambda.amazonaws.com"}}]})
TOKEN = "tokenKeyValue"


def deploy(settings, authorizers: dict[str, bool]) -> str:
    """Role, the workbook's function, and one authorizer per name (value: enableCachingForHttp), each allowed
    to invoke it. Returns the signature of TOKEN made with the authorizers' key."""
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
    return base64.b64encode(key.sign(TOKEN.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()
