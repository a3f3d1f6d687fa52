# %% [markdown]
# # 02 · The token-signing key pair
#
# With **token signing** turned on, a device sends AWS IoT Core a token *and* a signature of that
# token made with a private key. AWS IoT checks the signature with the matching public key, which
# you store on the authorizer, before it calls your Lambda function. In this notebook you create
# that RSA key pair, look at it without ever showing the private half, and sign and verify a token.
#
# ## What you will learn
# 1. Why asymmetric signing fits custom authorizers, and why AWS IoT verifies before it invokes.
# 2. How to create a 4096-bit RSA key pair, and the `openssl` commands that do the same.
# 3. How to keep the private key private: file modes and a git-ignored folder.
# 4. How to sign a token, verify the signature, and see a tampered signature fail.
#
# **Time to learn:** 15 minutes to read everything; 5 minutes on the README's 60-minute workshop path (run the cells, read "What just happened")
#
# ## Prerequisites
# | Concept | Importance | Where |
# | --- | --- | --- |
# | A target chosen and reachable | Necessary | [00 · Set up](00-set-up.ipynb) |
# | The authorizer function | Helpful | [01 · The authorizer function](01-authorizer-function.ipynb) |
# | Public-key cryptography in one paragraph | Helpful | [Public-key cryptography](https://en.wikipedia.org/wiki/Public-key_cryptography) |
#
# This notebook makes no AWS calls: everything happens on your machine.

# %% [markdown]
# ## Where this stage fits
#
# The custom-auth flow, with this notebook's part highlighted (the key pair behind the signature):
#
# ```mermaid
# sequenceDiagram
#     participant Device
#     participant Gateway as AWS IoT device gateway
#     participant Authorizer as Custom authorizer
#     participant Function as Lambda function
#     participant Broker as Message broker
#     participant Subscriber as MQTT subscriber
#     Device->>Gateway: 1. POST /topics/TOPIC with authorizer name, token, signature
#     Gateway->>Authorizer: 2. look up the custom authorizer by name
#     rect rgb(255, 230, 140)
#     Authorizer->>Authorizer: 3. verify the token's signature with the public key
#     end
#     Authorizer->>Function: 4. invoke (allowed by the function's resource policy)
#     Function-->>Authorizer: 5. isAuthenticated, principalId, policyDocuments
#     Authorizer->>Authorizer: 6. does the policy allow iot:Publish on the topic?
#     Gateway->>Broker: 7. publish the message
#     Broker-->>Subscriber: 8. deliver to matching subscriptions
#     Gateway-->>Device: 9. 200 OK, or 403 Forbidden
# ```
#
# (JupyterLab 4.1 and later draw this diagram; elsewhere it shows as text. The README has the whole flow.)

# %%
import base64
import shlex
import shutil
import stat
import subprocess
from pathlib import Path

from helpers.errors import show_briefly
from helpers.keys import generate_key_pair, openssl_commands, sign_token, tamper, verify_signature
from helpers.workbook import REPO_ROOT, open_workbook

show_briefly()  # errors (AWS, HTTP and the workbook's own) show as one clear line; %tb shows the full traceback
wb = open_workbook()
print(f"target: {wb.target}, region: {wb.region}")

# %% [markdown]
# ## 1. Why sign tokens at all?
#
# An RSA key pair has two halves. The **private key** makes signatures; the **public key** can only
# check them. So you can give the public key to AWS IoT Core (and to anyone) without giving away
# the ability to sign.
#
# With signing on, AWS IoT does this for every request that names your authorizer:
#
# 1. It reads the token (from the header or query parameter named by the authorizer's
#    `tokenKeyName`) and the signature (from `x-amz-customauthorizer-signature`).
# 2. It verifies the signature with the authorizer's public keys.
# 3. Only if that succeeds does it invoke your Lambda function.
#
# Checking first is the point: anyone on the internet can reach your account's data endpoint, and
# without a valid signature their requests never run (or bill) your function. The signature
# scheme is RSA with SHA-256 and PKCS #1 v1.5 padding, what `openssl dgst -sha256 -sign` makes.

# %% [markdown]
# ## 2. Create the key pair
#
# The AWS tutorial makes the keys with `openssl`. The workbook does the same in Python with the
# `cryptography` library: `generate_key_pair` (in `helpers/keys.py`) writes the two PEM files, or
# reuses them if they are already there. A 4096-bit key takes a few seconds to generate.

# %%
pair = generate_key_pair(wb.keys_dir, bits=4096)
wb.record("key-pair", str(wb.keys_dir))
wb.state.set(private_key_path=str(pair.private_key_path), public_key_path=str(pair.public_key_path))
print("Private key:", wb.relative(pair.private_key_path))
print("Public key: ", wb.relative(pair.public_key_path))
print("Key size:   ", pair.bits, "bits")

# %% [markdown]
# These are the `openssl` commands that do the same job, with your file paths. They are shown, not
# run: the first one would overwrite the private key you just made.

# %%
commands = openssl_commands(pair, "tokenKeyValue")
for step in ("generate", "check_private", "public", "check_public"):
    print(f"{step + ':':<15}{commands[step]}")

# %% [markdown]
# The two *check* commands only read the files, so they are safe to run. Each prints at most a
# short verdict (`-noout` keeps key material off the screen); exit status 0 means the file is valid.

# %%
if shutil.which("openssl"):
    for step in ("check_private", "check_public"):
        result = subprocess.run(shlex.split(commands[step]), capture_output=True, text=True)
        print(f"{step}: exit status {result.returncode} {result.stdout.strip()}".rstrip())
else:
    print("openssl is not installed here; the Python checks below do the same job.")

# %% [markdown]
# ### What just happened
# The workbook created an RSA private key (4096 bits, like the tutorial's `openssl genrsa ... 4096`)
# and wrote its public half next to it, both as PEM text files. The paths are saved in the
# workbook's state (`private_key_path`, `public_key_path`) for notebooks 03 and 05, and the key
# folder is recorded so that notebook 10 can delete it.
#
# ### Troubleshooting
# - **`KeyFileError: Private key file ... can be read by other users (mode 0644)`**: the key was
#   copied or its mode changed. If nobody else could have read it, run `chmod 600` on it as the
#   message says; otherwise delete both files and run the cell again for a new pair.
# - **`KeyFileError: ... is not the public half of ...`**: the two files come from different
#   pairs. Delete both and run the cell again.
# - **`openssl: command not found`**: nothing in the workbook needs `openssl`; skip those commands.

# %% [markdown]
# ## 3. Keep the private key private
#
# Whoever holds the private key can sign tokens that AWS IoT will accept. Two guards protect it:
# the file's **mode** lets only you read it, and its folder is **git-ignored**, so it can never be
# committed by accident. The public key needs no protection: mode `0644`, readable by all.

# %%
for path in (pair.private_key_path.parent, pair.private_key_path, pair.public_key_path):
    print(f"{stat.S_IMODE(path.stat().st_mode):04o}  {wb.relative(path)}")

# %%
shown_path = wb.relative(pair.private_key_path)
if Path(shown_path).is_absolute():
    print("The key folder is outside the repository, so git never sees it.")
else:
    # CLI: git check-ignore --verbose <private key path>
    result = subprocess.run(["git", "check-ignore", "--verbose", shown_path], cwd=REPO_ROOT, capture_output=True, text=True)
    if result.returncode == 0:  # output: SOURCE:LINE:PATTERN<TAB>PATH; the line number is not worth showing
        rule = result.stdout.split("\t")[0].split(":", 2)[-1]
        print(f"git ignores {shown_path} (rule '{rule}' in .gitignore)")
    elif result.returncode == 1:
        print(f"WARNING: git does not ignore {shown_path}")
    else:
        print("This folder is not a git checkout, so nothing here can be committed.")

# %% [markdown]
# The public key is the part you will paste into the authorizer in notebook 03. Its first line
# shows the format AWS IoT expects, `-----BEGIN PUBLIC KEY-----` (the SubjectPublicKeyInfo PEM
# that `openssl rsa -pubout` writes). The private key is never printed, not even in part.

# %%
print(pair.public_key_pem.splitlines()[0])
print(f"... {len(pair.public_key_pem.splitlines())} lines, {len(pair.public_key_pem)} characters in all")

# %% [markdown]
# ### What just happened
# You checked the modes: the folder is `0700` and the private key `0600` (owner only), the public
# key `0644`. Git either ignores the key folder or never sees it. The public key is ready to copy
# whole, `BEGIN` and `END` lines included: AWS IoT rejects a public key with any character added
# or removed.
#
# ### Troubleshooting
# - **A private key shows `0644`**: it was created or copied outside the workbook. Run
#   `chmod 600 <file>`, or better, delete the pair and make a new one.
# - **`WARNING: git does not ignore ...`**: the `.gitignore` entry for `.workbook/` is missing.
#   Restore it before you commit anything.

# %% [markdown]
# ## 4. Sign a token and verify it
#
# The token in this workbook is the tutorial's literal string `tokenKeyValue`. Signing it gives
# 512 bytes (4096 bits), sent as base64. `sign_token` does what this `openssl` pipeline does:

# %%
print(commands["sign"])

# %%
TOKEN = "tokenKeyValue"
signature = sign_token(pair.private_key_path, TOKEN)
print(f"Signature: {len(signature)} characters of base64 on one line ({len(base64.b64decode(signature))} bytes)")
print("Verifies with the public key:", verify_signature(pair.public_key_pem, TOKEN, signature))

# %% [markdown]
# Now change a single character of the signature, as a typo or an attacker would, and check again.
# `tamper` (in `helpers/keys.py`) changes the middle character, so the result is still valid base64.

# %%
tampered = tamper(signature)
checks = {
    "Tampered signature verifies:": verify_signature(pair.public_key_pem, TOKEN, tampered),
    "Genuine signature verifies for another token:": verify_signature(pair.public_key_pem, "tokenKeyValue2", signature),
}
for label, verdict in checks.items():
    print(f"{label:<47}{verdict}")

# %% [markdown]
# ### What just happened
# `verify_signature` is the check AWS IoT Core runs: it recomputes the SHA-256 of the token and
# asks the public key whether the signature matches. The genuine signature passes; one changed
# character, or a different token with the old signature, fails. In notebook 05 you will see AWS
# IoT refuse the tampered signature *without calling your function*.
#
# ### Troubleshooting
# Here is an error on purpose: signing with a key file that does not exist.

# %% tags=["raises-exception"]
sign_token(wb.keys_dir / "no-such-private-key.pem", TOKEN)

# %% [markdown]
# `KeyFileError` names the file and says how to get one: run the key-pair cell of section 2. Other
# signing problems:
#
# - **A signature that AWS IoT rejects although `verify_signature` passes here**: the value was
#   changed on the way, most often by line breaks (`openssl base64` wraps lines unless you pass
#   `-A`) or by an unencoded `+` or `/` in a URL. Send it on one line and URL-encode it in URLs.
# - **`echo` without `-n`**: signs `tokenKeyValue` plus a newline, a different token.

# %% [markdown]
# ## Check your work
# The cell below proves the stage worked: both files exist with the right modes, the paths are
# recorded, the signature verifies and the tampered one does not.

# %%
private_path = Path(wb.state.require("private_key_path", notebook="02-key-pair"))
public_path = Path(wb.state.require("public_key_path", notebook="02-key-pair"))
assert private_path.is_file() and stat.S_IMODE(private_path.stat().st_mode) == 0o600
assert public_path.is_file() and stat.S_IMODE(public_path.stat().st_mode) == 0o644
assert public_path.read_text().startswith("-----BEGIN PUBLIC KEY-----") and pair.bits == 4096
assert verify_signature(public_path.read_text(), TOKEN, sign_token(private_path, TOKEN))
assert not verify_signature(public_path.read_text(), TOKEN, tamper(signature))
print(f"✓ Key pair: {pair.bits}-bit RSA, private key owner-only, signature verifies, tampered one does not.")

# %% [markdown]
# ## Questions
# 1. AWS IoT stores only the public key. Why is that enough for it to trust a token?
#
# <details><summary>Solution</summary>
#
# A valid signature can only be made with the private key, and the public key can check it. So a
# token whose signature verifies was signed by whoever holds the private key: you, or a signing
# service you run. AWS IoT never needs, and should never see, the private key.
# </details>
#
# 2. Why does AWS IoT verify the signature *before* invoking the Lambda function?
#
# <details><summary>Solution</summary>
#
# So that unsigned or forged requests are refused at the door: they cost no Lambda invocation,
# cannot overload or probe your function, and never reach your authorization code at all.
# </details>
#
# 3. Is the signature of `tokenKeyValue` a secret?
#
# <details><summary>Solution</summary>
#
# Not a cryptographic one: anyone can check it with the public key. But it works like a password
# for that token: anyone who copies the token *and* its signature can send them again. Real
# systems sign tokens that expire or carry a nonce.
# </details>

# %% [markdown]
# ## Summary
# - Token signing lets AWS IoT reject requests before your function runs; it checks RSA SHA-256
#   signatures with the public keys stored on the authorizer.
# - `generate_key_pair` makes a 4096-bit pair, like `openssl genrsa` plus `openssl rsa -pubout`.
# - The private key is owner-only (`0600`) in a git-ignored folder and is never printed.
# - `sign_token` and `verify_signature` sign and check; one changed character breaks a signature.
#
# ## What's next
# In [03 · Create the authorizer](03-create-authorizer.ipynb) you create the AWS IoT authorizer
# that ties your function and this public key together.
