"""Schemathesis hooks for the saga's services (loaded by scripts/check-api.sh).

The one rule a schema cannot describe: by contract, an Idempotency-Key reused with another body
is refused (422), and generated keys repeat across test cases. So each valid key is made unique
to its request; keys the schema forbids are sent as generated, so their rejection is still tested.
"""

import re
import uuid

import schemathesis

VALID_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    headers = case.headers or {}
    for name in list(headers):
        if name.lower() == "idempotency-key" and VALID_KEY.match(str(headers[name])):
            headers[name] = f"{str(headers[name])[:222]}-{uuid.uuid4().hex}"
    return None
