"""The one shared signing helper and request builders for tests."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from runnerguard.domain.signatures import sign

SECRET = "test-webhook-secret"
ADMIN = "test-admin-token-long-enough-for-the-32-character-minimum"


def signed_headers(body: bytes, event: str, *, guid: str | None = None, secret: str = SECRET) -> dict[str, str]:
    return {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": guid or str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(secret, body),
        "X-GitHub-Hook-ID": "123",
        "X-GitHub-Hook-Installation-Target-Type": "integration",
        "X-GitHub-Hook-Installation-Target-ID": "42",
        "Content-Type": "application/json",
    }


def dumps(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def admin_headers(token: str = ADMIN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def load_json(path: Path) -> Any:
    return json.loads(path.read_text())
