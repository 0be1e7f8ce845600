"""Standard Webhooks signatures: `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>`.

The signed content is `{id}.{timestamp}.{body}`, the key the bytes after `whsec_`, base64-decoded;
the official SDK's `client.webhooks.unwrap(body, headers, secret=…)` checks exactly this.

Example:
    >>> headers = sign("whsec_" + "a2V5", "evt_1", 1700000000, b"{}")
    >>> headers["webhook-signature"].startswith("v1,")
    True
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

PREFIX = "whsec_"


def new_secret() -> str:
    """A fresh signing secret, `whsec_` and 32 random bytes in base64."""
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three headers of one attempt; each attempt is signed with its own timestamp."""
    key = base64.b64decode(secret.removeprefix(PREFIX))
    content = f"{message_id}.{timestamp}.".encode() + body
    digest = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    return {"webhook-id": message_id, "webhook-timestamp": str(timestamp), "webhook-signature": f"v1,{digest}"}
