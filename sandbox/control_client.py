"""Driving the control API the way the BlueClerk web app and a user's browser do, against
the provider simulators: start a connection, consent, follow the redirect back, and run
events through the API's engine. For tests and demos."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from fastapi.testclient import TestClient

from control.oauth_flow import sandbox_consent
from schemas.codec import AvroCodec
from schemas.events import SCHEMA_BY_ENTITY, event_to_avro
from schemas.records import ChangeEvent

__all__ = ["auth", "consent", "new_tenant", "process", "start_connection"]

_CODEC = AvroCodec()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def new_tenant(provider: str) -> str:
    """A fresh company id in the provider's own shape."""
    if provider == "quickbooks":
        return f"9341{uuid.uuid4().int % 10**12:012d}"
    if provider == "xero":
        return str(uuid.uuid4())
    return f"FB{uuid.uuid4().hex[:10]}"


def start_connection(api: TestClient, account: str, provider: str) -> dict[str, Any]:
    token = api.app.state.control.services.settings.control_token  # type: ignore[attr-defined]
    r = api.post(f"/v1/accounts/{account}/connection", json={"provider": provider},
                 headers=auth(token))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def consent(api: TestClient, account: str, provider: str, tenant: str,
            **choices: Any) -> httpx.Response:
    """Start a connection, consent at the simulator, and follow the redirect back."""
    start = start_connection(api, account, provider)
    redirect = sandbox_consent(start["authorization_url"], tenant=tenant, **choices)
    response: httpx.Response = api.get("/oauth/callback", params=redirect)
    return response


def process(api: TestClient, event: ChangeEvent) -> tuple[str, str | None]:
    """Run one event through the control API's engine: (final status, error code)."""
    engine = api.app.state.control.engine()  # type: ignore[attr-defined]
    payload = _CODEC.encode(SCHEMA_BY_ENTITY[event.entity_type], event_to_avro(event))
    status = engine.process(event, payload).statuses[-1]
    return status.status.value, status.error_code.value if status.error_code else None
