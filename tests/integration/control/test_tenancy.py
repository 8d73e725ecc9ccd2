"""One account, one company: what a connection may and may not attach, and where writes go.

Each test drives the control API against the provider simulators over HTTP (consent,
redirect, callback) and the sync engine for the writes, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from control import oauth_flow
from control.api import create_control_app
from control.oauth_flow import CallbackParams, complete_authorization, sandbox_consent
from sandbox.control_client import auth, consent, new_tenant, process, start_connection
from sandbox.scenario import EventFactory
from service.bootstrap import Services, build_services
from service.config import Settings
from state.models import OAuthState

PROVIDERS = ("quickbooks", "xero", "freshbooks")
AUTH = auth("control-tests-token")
_tenant = new_tenant
_start = start_connection
_consent = consent
_process = process


@pytest.fixture
def services(control_services: Services) -> Services:
    return control_services


@pytest.fixture
def api(control_api: TestClient) -> TestClient:
    return control_api


def _error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["code"] == code, body
    message: str = body["message"]
    return message


def _books(sandbox: str, provider: str, tenant: str) -> dict[str, Any]:
    r = httpx.get(f"{sandbox}/{provider}/_sandbox/books/{tenant}", timeout=10)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _customers(books: dict[str, Any], provider: str) -> dict[str, str]:
    """Provider id -> name of every customer in the books."""
    if provider == "quickbooks":
        return {c["Id"]: c["DisplayName"] for c in books.get("Customer", [])}
    if provider == "xero":
        return {c["ContactID"]: c["Name"] for c in books.get("Contacts", [])}
    return {str(c["id"]): c.get("organization") or c.get("fname", "")
            for c in books.get("clients", [])}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_reconnect_to_another_company_writes_nothing_there(
        api: TestClient, services: Services, sandbox_url: str, provider: str) -> None:
    """The newcomer's case: connected to company A with a customer synced, a reconnect
    that picks company B is refused (naming both), and no write of A's records reaches B;
    A's connection keeps working."""
    account, company_a, company_b = f"acct-{uuid.uuid4().hex[:8]}", _tenant(provider), \
        _tenant(provider)
    assert _consent(api, account, provider, company_a).status_code == 200
    factory = EventFactory(account)
    now = dt.datetime.now(dt.UTC)
    assert _process(api, factory.event(factory.customer("c1", "Ada Lovelace").record,
                                       created_at=now)) == ("synced", None)
    message = _error(_consent(api, account, provider, company_b), 409, "company_mismatch")
    assert company_a in message and company_b in message and "disconnect" in message
    info = services.connections.get(account)
    assert info is not None and (info.tenant_id, info.status) == (company_a, "active")
    update = factory.event(factory.customer("c1", "Ada King").record, created_at=now)
    assert _process(api, update) == ("synced", None)
    assert _customers(_books(sandbox_url, provider, company_b), provider) == {}
    assert "Ada King" in _customers(_books(sandbox_url, provider, company_a),
                                    provider).values()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_after_a_disconnect_another_company_starts_afresh(
        api: TestClient, services: Services, sandbox_url: str, provider: str) -> None:
    """Disconnect, then connect company B: a new connection. A's links are never used
    for B (an update of a record linked in A is not written into B's books), waiting
    changes of A end with a final status, and B's own new records sync."""
    account, company_a, company_b = f"acct-{uuid.uuid4().hex[:8]}", _tenant(provider), \
        _tenant(provider)
    assert _consent(api, account, provider, company_a).status_code == 200
    factory = EventFactory(account)
    created = dt.datetime.now(dt.UTC)
    assert _process(api, factory.event(factory.customer("c1", "Ada Lovelace").record,
                                       created_at=created))[0] == "synced"
    r = api.post(f"/v1/accounts/{account}/disconnect", headers=AUTH)
    assert r.status_code == 200 and r.json()["tokens_deleted"] is True
    r = _consent(api, account, provider, company_b)
    assert r.status_code == 200, r.text
    assert (r.json()["connection"], r.json()["tenant_id"]) == ("new_company", company_b)
    # c1 was created before this connection and its link points into A: not written to B.
    update = factory.event(factory.customer("c1", "Ada King").record, created_at=created)
    assert _process(api, update) == ("skipped", "pre_connection")
    newcomer = factory.event(factory.customer("c2", "Grace Hopper").record,
                             created_at=dt.datetime.now(dt.UTC))
    assert _process(api, newcomer) == ("synced", None)
    assert sorted(_customers(_books(sandbox_url, provider, company_b), provider).values()) \
        == ["Grace Hopper"]
    assert "Ada King" not in _customers(_books(sandbox_url, provider, company_a),
                                        provider).values()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_one_company_one_account(api: TestClient, services: Services, provider: str) -> None:
    company = _tenant(provider)
    first, second = f"acct-{uuid.uuid4().hex[:8]}", f"acct-{uuid.uuid4().hex[:8]}"
    assert _consent(api, first, provider, company).status_code == 200
    message = _error(_consent(api, second, provider, company), 409, "company_in_use")
    assert "another BlueClerk account" in message and first not in message
    assert services.connections.get(second) is None


def test_an_operator_may_allow_a_shared_company(monkeypatch: pytest.MonkeyPatch,
                                                services: Services) -> None:
    company = _tenant("freshbooks")
    monkeypatch.setenv("SHARED_COMPANIES", f"freshbooks:{company}")
    shared = build_services(Settings.from_env())
    try:
        with TestClient(create_control_app(shared)) as client:
            for account in ("acct-shared-1", "acct-shared-2"):
                assert _consent(client, account, "freshbooks", company).status_code == 200
    finally:
        shared.close()


def test_a_consent_completed_by_someone_else_attaches_nothing(
        api: TestClient, services: Services, sandbox_url: str) -> None:
    """The state alone is not enough: a browser without the starter's binding (someone
    the consent link was forwarded to) is refused before any code is exchanged."""
    account = f"acct-{uuid.uuid4().hex[:8]}"
    start = _start(api, account, "xero")
    redirect = sandbox_consent(start["authorization_url"], tenant=_tenant("xero"))
    with TestClient(api.app) as stranger:  # another browser: no binding cookie
        _error(stranger.get("/oauth/callback", params=redirect), 403, "binding_mismatch")
        forged = {**redirect, "binding": "guess"}
        _error(stranger.post("/v1/oauth/callback", json=forged, headers=AUTH), 403,
               "binding_mismatch")
    assert services.connections.get(account) is None
    # The state was not spent by the refused attempts: the real user still completes.
    r = api.get("/oauth/callback", params=redirect)
    assert r.status_code == 200, r.text
    with services.db.transaction() as s:
        row = s.get(OAuthState, redirect["state"])
        assert row is not None and row.binding_hash != start["binding"]  # a hash only
        verifier = services.cipher.decrypt(row.code_verifier)  # stored encrypted
        assert len(verifier) == 86 and verifier.encode() not in row.code_verifier


def test_xero_connects_the_organisation_of_this_consent(api: TestClient,
                                                        services: Services) -> None:
    """Xero lists every organisation the user ever connected; the one chosen in this
    consent (its authEventId) is connected, not the first of the list."""
    user = f"user-{uuid.uuid4().hex[:6]}"
    earlier, chosen = _tenant("xero"), _tenant("xero")
    other_account = f"acct-{uuid.uuid4().hex[:8]}"
    assert _consent(api, other_account, "xero", earlier, user=user).status_code == 200
    account = f"acct-{uuid.uuid4().hex[:8]}"
    r = _consent(api, account, "xero", chosen, user=user)
    assert r.status_code == 200, r.text
    assert r.json()["tenant_id"] == chosen


def test_xero_asks_which_organisation_when_several_were_authorised(
        api: TestClient, services: Services) -> None:
    account, org_1, org_2 = f"acct-{uuid.uuid4().hex[:8]}", _tenant("xero"), _tenant("xero")
    start = _start(api, account, "xero")
    redirect = sandbox_consent(start["authorization_url"], tenant=f"{org_1},{org_2}")
    r = api.get("/oauth/callback", params=redirect)
    _error(r, 409, "choose_organisation")
    choices = {c["tenant_id"] for c in r.json()["error"]["choices"]}
    assert choices == {org_1, org_2}
    assert services.connections.get(account) is None
    r = api.post(f"/v1/accounts/{account}/connection/organisation", headers=AUTH,
                 json={"state": redirect["state"], "tenant": org_2,
                       "binding": start["binding"]})
    assert r.status_code == 200, r.text
    assert r.json()["tenant_id"] == org_2
    # A choice is made once.
    again = api.post(f"/v1/accounts/{account}/connection/organisation", headers=AUTH,
                     json={"state": redirect["state"], "tenant": org_1,
                           "binding": start["binding"]})
    _error(again, 400, "invalid_state")


def test_quickbooks_realm_on_the_callback_must_be_the_tokens(
        api: TestClient, services: Services, sandbox_url: str) -> None:
    """The realmId rides on the redirect, outside the token: a tampered realmId is
    refused (QuickBooks answers the token only for its own company) and the grant is
    revoked."""
    account, realm, other = f"acct-{uuid.uuid4().hex[:8]}", _tenant("quickbooks"), \
        _tenant("quickbooks")
    start = _start(api, account, "quickbooks")
    redirect = sandbox_consent(start["authorization_url"], tenant=realm)
    r = api.get("/oauth/callback", params={**redirect, "realmId": other})
    message = _error(r, 400, "realm_mismatch")
    assert other not in message and realm not in message
    assert services.connections.get(account) is None


def test_errors_on_the_callback_list_no_tenant_ids(api: TestClient) -> None:
    account, org = f"acct-{uuid.uuid4().hex[:8]}", _tenant("freshbooks")
    start = _start(api, account, "freshbooks")
    redirect = sandbox_consent(start["authorization_url"], tenant=org)
    r = api.get("/oauth/callback", params={**redirect, "tenant": "FBnot-mine"})
    message = _error(r, 400, "unknown_organisation")
    assert org not in r.text and "FBnot-mine" not in message


def test_two_callbacks_racing_for_one_state_connect_once(services: Services) -> None:
    """Eight callbacks carrying one state and binding, at once: the conditional update
    lets exactly one through, on SQLite and on PostgreSQL."""
    account, org = f"acct-{uuid.uuid4().hex[:8]}", _tenant("freshbooks")
    start = oauth_flow.start_authorization(services, account, "freshbooks")
    redirect = sandbox_consent(start.authorization_url, tenant=org)
    params = CallbackParams(redirect["state"], redirect["code"], binding=start.binding)
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def callback() -> None:
        barrier.wait()
        try:
            complete_authorization(services, params)
            outcomes.append("connected")
        except oauth_flow.ControlError as exc:
            outcomes.append(exc.code)

    threads = [threading.Thread(target=callback) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["connected"] + ["invalid_state"] * 7
