"""Schemathesis hooks for the saga's services (loaded by scripts/check-api.sh).

The one rule a schema cannot describe: by contract, an Idempotency-Key reused with another body
is refused (422), and generated keys repeat across test cases. So each valid key is made unique
to its request; keys the schema forbids are sent as generated, so their rejection is still tested.

And one matter of time: a read of the read side may wait up to 10 s for the projection
(`wait_ms`), which for an order no one placed it does in full when `min_event` is given. Valid
waits are cut to 100 ms, so that a run stays short; invalid ones are sent as generated. The
end-to-end tests (tests/history.rs) wait for real.
"""

import re
import uuid

import schemathesis

VALID_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
LONGEST_WAIT_MS = 100


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    headers = case.headers or {}
    for name in list(headers):
        if name.lower() == "idempotency-key" and VALID_KEY.match(str(headers[name])):
            headers[name] = f"{str(headers[name])[:222]}-{uuid.uuid4().hex}"
    query = case.query or {}
    wait = query.get("wait_ms")
    if isinstance(wait, str) and wait.isdigit():
        wait = int(wait)
    if isinstance(wait, int) and not isinstance(wait, bool) and LONGEST_WAIT_MS < wait <= 10000:
        query["wait_ms"] = LONGEST_WAIT_MS
    return None
