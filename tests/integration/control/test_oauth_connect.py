"""Connecting through the control API against the three simulators' real OAuth flows."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from control import oauth_flow
from control.api import create_control_app
from control.oauth_flow import sandbox_consent
from sandbox.scenario import EventFactory
from schemas.codec import AvroCodec
from schemas.events import event_to_avro
from service.bootstrap import Services, build_services
from service.config import Settings, Topics
from state.crypto import generate_key
from state.models import EntityLink, OAuthState

TOKEN = "test-control-token"
REDIRECT = "http://127.0.0.1:8700/oauth/callback"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _tenant(provider: str) -> str:
    if provider == "quickbooks":
        return f"9341{uuid.uuid4().int % 10**12:012d}"
    if provider == "xero":
        return str(uuid.uuid4())
    return f"FB{uuid.uuid4().hex[:10]}"


@pytest.fixture
def services(monkeypatch: pytest.MonkeyPatch, sandbox_url: str, sqlite_url: str,
             kafka_bootstrap: str, topics: Topics) -> Iterator[Services]:
    for name, value in {"SANDBOX_URL": sandbox_url, "DATABASE_URL": sqlite_url,
                        "TOKEN_ENCRYPTION_KEY": generate_key(), "CONTROL_API_TOKEN": TOKEN,
                        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
                        "TOPIC_PREFIX": topics.prefix, "OAUTH_REDIRECT_URI": REDIRECT}.items():
        monkeypatch.setenv(name, value)
    built = build_services(Settings.from_env())
    yield built
    built.close()


@pytest.fixture
def api(services: Services) -> Iterator[TestClient]:
    with TestClient(create_control_app(services)) as client:
        yield client


def _start(api: TestClient, account: str, provider: str) -> str:
    r = api.post(f"/v1/accounts/{account}/connection", json={"provider": provider}, headers=AUTH)
    assert r.status_code == 200, r.text
    url: str = r.json()["authorization_url"]
    return url


def _connect(api: TestClient, account: str, provider: str, tenant: str) -> dict[str, str]:
    redirect = sandbox_consent(_start(api, account, provider), tenant=tenant)
    r = api.get("/oauth/callback", params=redirect)
    assert r.status_code == 200, r.text
    assert r.json()["tenant_id"] == tenant
    return redirect


def _error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    message: str = body["error"]["message"]
    assert message
    return message


@pytest.mark.parametrize("provider", ["quickbooks", "xero", "freshbooks"])
class TestConnect:
    """Authorize URL from the API, consent at the simulator, the 302, then the callback."""

    def test_connects_with_state_and_pkce(self, api: TestClient, services: Services,
                                          provider: str) -> None:
        account, tenant = f"acct-{uuid.uuid4().hex[:8]}", _tenant(provider)
        url = _start(api, account, provider)
        query = dict(parse_qsl(urlsplit(url).query))
        assert query["state"] and query["redirect_uri"] == REDIRECT
        if provider != "freshbooks":  # FreshBooks does not support PKCE
            assert query["code_challenge_method"] == "S256" and query["code_challenge"]
        with services.db.transaction() as s:
            pending = s.get(OAuthState, query["state"])
            assert pending is not None and pending.account_id == account
            assert pending.used_at is None
            assert (pending.expires_at - pending.created_at).total_seconds() == 600
        redirect = sandbox_consent(url, tenant=tenant)
        assert redirect["state"] == query["state"]
        if provider == "quickbooks":
            assert redirect["realmId"] == tenant
        r = api.get("/oauth/callback", params=redirect)
        assert r.status_code == 200, r.text
        assert r.json()["tenant_id"] == tenant and r.json()["status"] == "active"
        info = services.connections.get(account)
        assert info is not None and (info.provider, info.tenant_id) == (provider, tenant)
        status = api.get(f"/v1/accounts/{account}/status", headers=AUTH).json()
        assert status["health"] == "healthy"
        assert status["connection"]["provider"] == provider
        # The adapter works with the stored tokens (one authenticated call each).
        assert isinstance(services.providers.adapter(info).list_income_accounts(), list) \
            if provider != "xero" else True

    def test_tampered_state_is_refused_and_spends_nothing(self, api: TestClient,
                                                          services: Services,
                                                          provider: str) -> None:
        account, tenant = f"acct-{uuid.uuid4().hex[:8]}", _tenant(provider)
        redirect = sandbox_consent(_start(api, account, provider), tenant=tenant)
        tampered = {**redirect, "state": redirect["state"][:-2] + "xx"}
        message = _error(api.get("/oauth/callback", params=tampered), 400, "invalid_state")
        assert "start the connection again" in message
        _error(api.get("/oauth/callback", params={k: v for k, v in redirect.items()
                                                  if k != "state"}), 400, "invalid_state")
        assert services.connections.get(account) is None
        r = api.get("/oauth/callback", params=redirect)  # the genuine one still completes
        assert r.status_code == 200, r.text

    def test_replayed_code(self, api: TestClient, services: Services, provider: str) -> None:
        account, tenant = f"acct-{uuid.uuid4().hex[:8]}", _tenant(provider)
        first = _connect(api, account, provider, tenant)
        # The same redirect again: the state was spent by the first callback.
        message = _error(api.get("/oauth/callback", params=first), 400, "invalid_state")
        assert "already completed" in message
        # The old code under a fresh authorization: the provider says invalid_grant.
        fresh = dict(parse_qsl(urlsplit(_start(api, account, provider)).query))["state"]
        replay = {**first, "state": fresh,
                  "binding": api.cookies.get(oauth_flow.BINDING_COOKIE, path="/oauth")}
        r = api.post("/v1/oauth/callback", json=replay, headers=AUTH)
        message = _error(r, 400, "invalid_grant")
        assert message == "the authorization code was already used or expired; start again"
        info = services.connections.get(account)
        assert info is not None and info.status == "active"

    def test_denied_consent(self, api: TestClient, services: Services, provider: str) -> None:
        account = f"acct-{uuid.uuid4().hex[:8]}"
        redirect = sandbox_consent(_start(api, account, provider), approve=False,
                                   tenant=_tenant(provider))
        assert redirect["error"] == "access_denied"
        message = _error(api.get("/oauth/callback", params=redirect), 400, "access_denied")
        assert message.startswith("access_denied: the user declined")
        assert services.connections.get(account) is None


class TestOneProviderPerAccount:
    """A second accounting system is refused while one is connected; disconnect frees it."""

    def test_second_provider_refused_then_allowed_after_disconnect(
            self, api: TestClient, services: Services, sandbox_url: str) -> None:
        account, realm = f"acct-{uuid.uuid4().hex[:8]}", _tenant("quickbooks")
        _connect(api, account, "quickbooks", realm)
        with services.db.transaction() as s:
            s.add(EntityLink(account_id=account, entity_type="customer", entity_id="c-1",
                             provider="quickbooks", provider_id="1", last_applied_version=1))
        r = api.post(f"/v1/accounts/{account}/connection", json={"provider": "freshbooks"},
                     headers=AUTH)
        message = _error(r, 409, "already_connected")
        assert "QuickBooks Online" in message and "disconnect" in message

        # Disconnect revokes the grant at QuickBooks: its tokens stop working there.
        access = services.connections.current(account).access_token
        r = api.post(f"/v1/accounts/{account}/disconnect", headers=AUTH)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["tokens_revoked"] is True and body["links_kept"] == 1
        probe = httpx.get(f"{sandbox_url}/quickbooks/v3/company/{realm}/companyinfo/{realm}",
                          headers={"Authorization": f"Bearer {access}",
                                   "Accept": "application/json"}, timeout=10)
        assert probe.status_code == 401
        status = api.get(f"/v1/accounts/{account}/status", headers=AUTH).json()
        assert status["health"] == "disconnected" and status["what_to_do"]

        _connect(api, account, "freshbooks", _tenant("freshbooks"))
        with services.db.transaction() as s:
            assert s.get(EntityLink, (account, "customer", "c-1")) is not None

    def test_reconnect_redrives_what_waited(self, api: TestClient, services: Services,
                                            sandbox_url: str) -> None:
        account, realm = f"acct-{uuid.uuid4().hex[:8]}", _tenant("quickbooks")
        _connect(api, account, "quickbooks", realm)
        first = services.connections.get(account)
        services.connections.set_status(account, "reconnect_required", "refresh refused")
        # A change that arrives meanwhile waits for the reconnect.
        event = EventFactory(account).customer("cust-rc", "Reconnect Waiting Customer")
        payload = AvroCodec().encode("CustomerChangeEvent", event_to_avro(event))
        engine = api.app.state.control.engine()  # type: ignore[attr-defined]
        assert engine.process(event, payload).statuses[-1].status.value == "failed"
        status = api.get(f"/v1/accounts/{account}/status", headers=AUTH).json()
        assert status["health"] == "reconnect_required"
        assert status["parked"] == {"reconnect_required": 1}
        assert status["recent_errors"][0]["error_code"] == "reconnect_required"
        assert status["recent_errors"][0]["what_to_do"]
        redirect = sandbox_consent(_start(api, account, "quickbooks"), tenant=realm)
        r = api.get("/oauth/callback", params=redirect)
        assert r.status_code == 200 and r.json()["reconnected"] is True
        assert r.json()["redriven"] == {"synced": 1}
        books = httpx.get(f"{sandbox_url}/quickbooks/_sandbox/books/{realm}", timeout=10).json()
        assert [c["DisplayName"] for c in books["Customer"]] == ["Reconnect Waiting Customer"]
        again = services.connections.get(account)
        assert again is not None and first is not None
        assert again.status == "active" and again.connected_at == first.connected_at


class TestApiSurface:
    """Service token, error bodies and the OpenAPI description."""

    def test_token_required(self, api: TestClient) -> None:
        _error(api.get("/v1/accounts/a1/status"), 401, "unauthorized")
        _error(api.get("/v1/accounts/a1/status", headers={"Authorization": "Bearer nope"}),
               401, "unauthorized")

    def test_bad_requests_have_clear_errors(self, api: TestClient) -> None:
        r = api.post("/v1/accounts/a1/connection", json={"provider": "sage"}, headers=AUTH)
        assert "provider" in _error(r, 422, "invalid_request")
        _error(api.get("/v1/nowhere", headers=AUTH), 404, "not_found")
        _error(api.get("/v1/accounts/a1/wizard/customers", headers=AUTH), 409, "not_connected")
        _error(api.post("/v1/accounts/a1/wizard/steps/nope/skip", headers=AUTH), 422,
               "invalid_request")

    def test_openapi_describes_the_endpoints(self, api: TestClient) -> None:
        spec = api.get("/openapi.json").json()
        assert "/v1/accounts/{account_id}/wizard/customers/import" in spec["paths"]
        assert "/oauth/callback" in spec["paths"]
        assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
