"""The Xero simulator over real HTTP (uvicorn in a thread + httpx)."""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from sandbox.faults import FaultPlan, FaultSwitchboard
from sandbox.serve import serve_in_thread
from sandbox.xero import ManualClock, XeroLimits, create_app

API = "/api.xro/2.0"
CLIENT, SECRET = "blueclerk-local", "local-secret"
REDIRECT = "http://localhost/callback"
DUP_MSG = ("The contact name {} is already assigned to another contact. "
           "The contact name must be unique across all active contacts.")


@dataclass
class Sim:
    base: str
    clock: ManualClock
    board: FaultSwitchboard
    http: httpx.Client

    def grant(self, tenant: str | None = None) -> tuple[str, dict[str, str], dict[str, Any]]:
        tenant = tenant or str(uuid.uuid4())
        tok = self.http.post("/_sandbox/grants", json={"tenant": tenant}).json()
        headers = {"Authorization": f"Bearer {tok['access_token']}", "xero-tenant-id": tenant}
        return tenant, headers, tok

    def books(self, tenant: str) -> dict[str, Any]:
        data: dict[str, Any] = self.http.get(f"/_sandbox/books/{tenant}").json()
        return data


@contextmanager
def _serve(limits: XeroLimits | None = None) -> Iterator[Sim]:
    clock = ManualClock(1_700_000_000.0)
    board = FaultSwitchboard(seed=7)
    app = create_app(board, limits or XeroLimits(per_minute=100_000, per_day=1_000_000,
                                                 app_per_minute=1_000_000), clock=clock)
    with serve_in_thread(app) as base, httpx.Client(base_url=base, timeout=10) as http:
        yield Sim(base, clock, board, http)


@pytest.fixture(scope="module")
def sim() -> Iterator[Sim]:
    with _serve() as s:
        yield s


def _basic() -> dict[str, str]:
    raw = base64.b64encode(f"{CLIENT}:{SECRET}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def _challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(
        b"=").decode()


def _authorize(sim: Sim, tenant: str, *, decision: str = "approve",
               verifier: str | None = None) -> httpx.Response:
    params = {"client_id": CLIENT, "response_type": "code", "redirect_uri": REDIRECT,
              "scope": "offline_access accounting.contacts", "state": "st-1"}
    if verifier:
        params.update(code_challenge=_challenge(verifier), code_challenge_method="S256")
    page = sim.http.get("/identity/connect/authorize", params=params)
    assert page.status_code == 200
    assert "<form" in page.text and "decision" in page.text
    return sim.http.post("/identity/connect/authorize/decision",
                         data={**params, "decision": decision, "tenant": tenant})


def _code(resp: httpx.Response) -> dict[str, list[str]]:
    assert resp.status_code == 302
    loc = resp.headers["location"]
    assert loc.startswith(REDIRECT)
    return parse_qs(urlparse(loc).query)


def _token(sim: Sim, data: dict[str, str], basic: bool = True) -> httpx.Response:
    return sim.http.post("/connect/token", data=data, headers=_basic() if basic else {})


# ---------------------------------------------------------------------------------- OAuth
def test_code_flow_with_pkce_and_connections(sim: Sim) -> None:
    tenant = str(uuid.uuid4())
    verifier = secrets.token_urlsafe(40)
    q = _code(_authorize(sim, tenant, verifier=verifier))
    assert q["state"] == ["st-1"]
    r = _token(sim, {"grant_type": "authorization_code", "code": q["code"][0],
                     "redirect_uri": REDIRECT, "code_verifier": verifier})
    assert r.status_code == 200, r.text
    tok = r.json()
    assert tok["expires_in"] == 1800 and tok["token_type"] == "Bearer"
    assert tok["access_token"] and tok["refresh_token"] and "offline_access" in tok["scope"]
    auth = {"Authorization": f"Bearer {tok['access_token']}"}
    conns = sim.http.get("/connections", headers=auth).json()
    assert [c["tenantId"] for c in conns] == [tenant]
    assert conns[0]["tenantType"] == "ORGANISATION"
    assert set(conns[0]) == {"id", "authEventId", "tenantId", "tenantType", "tenantName",
                             "createdDateUtc", "updatedDateUtc"}
    ok = sim.http.get(f"{API}/Contacts", headers={**auth, "xero-tenant-id": tenant})
    assert ok.status_code == 200
    # the code is single use
    again = _token(sim, {"grant_type": "authorization_code", "code": q["code"][0],
                         "redirect_uri": REDIRECT, "code_verifier": verifier})
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    # disconnect the tenant
    assert sim.http.delete(f"/connections/{conns[0]['id']}", headers=auth).status_code == 204
    gone = sim.http.get(f"{API}/Contacts", headers={**auth, "xero-tenant-id": tenant})
    assert gone.status_code == 403 and gone.json()["Detail"] == "AuthenticationUnsuccessful"


def test_pkce_tampered_or_missing_verifier_rejected(sim: Sim) -> None:
    verifier = secrets.token_urlsafe(40)
    for sent in (verifier + "x", None):
        q = _code(_authorize(sim, str(uuid.uuid4()), verifier=verifier))
        data = {"grant_type": "authorization_code", "code": q["code"][0],
                "redirect_uri": REDIRECT}
        if sent:
            data["code_verifier"] = sent
        r = _token(sim, data)
        assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_public_pkce_client_and_client_auth(sim: Sim) -> None:
    verifier = secrets.token_urlsafe(40)
    q = _code(_authorize(sim, str(uuid.uuid4()), verifier=verifier))
    r = _token(sim, {"grant_type": "authorization_code", "code": q["code"][0],
                     "client_id": CLIENT, "redirect_uri": REDIRECT,
                     "code_verifier": verifier}, basic=False)
    assert r.status_code == 200
    q = _code(_authorize(sim, str(uuid.uuid4())))  # no PKCE: secret required
    r = _token(sim, {"grant_type": "authorization_code", "code": q["code"][0],
                     "client_id": CLIENT, "redirect_uri": REDIRECT}, basic=False)
    assert r.status_code == 400 and r.json()["error"] == "invalid_client"
    r = _token(sim, {"grant_type": "authorization_code", "code": q["code"][0],
                     "client_id": CLIENT, "client_secret": SECRET, "redirect_uri": REDIRECT},
               basic=False)
    assert r.status_code == 200


def test_denied_consent_redirects_with_access_denied(sim: Sim) -> None:
    q = _code(_authorize(sim, str(uuid.uuid4()), decision="deny"))
    assert q == {"error": ["access_denied"], "state": ["st-1"]}


def test_code_expires_after_five_minutes(sim: Sim) -> None:
    q = _code(_authorize(sim, str(uuid.uuid4())))
    sim.clock.advance(301)
    r = _token(sim, {"grant_type": "authorization_code", "code": q["code"][0],
                     "redirect_uri": REDIRECT})
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_refresh_rotation_grace_and_expiry(sim: Sim) -> None:
    _, _, tok = sim.grant()
    old = tok["refresh_token"]
    first = _token(sim, {"grant_type": "refresh_token", "refresh_token": old}).json()
    assert first["refresh_token"] != old and first["access_token"] != tok["access_token"]
    sim.clock.advance(29 * 60)  # lost response: the old token still works inside 30 min
    retry = _token(sim, {"grant_type": "refresh_token", "refresh_token": old})
    assert retry.status_code == 200 and retry.json()["refresh_token"] != old
    sim.clock.advance(2 * 60)  # 31 min after first use
    late = _token(sim, {"grant_type": "refresh_token", "refresh_token": old})
    assert late.status_code == 400 and late.json() == {"error": "invalid_grant"}
    newest = _token(sim, {"grant_type": "refresh_token",
                          "refresh_token": retry.json()["refresh_token"]})
    assert newest.status_code == 200


def test_refresh_token_unused_for_60_days_expires(sim: Sim) -> None:
    _, _, tok = sim.grant()
    _, _, tok2 = sim.grant()
    sim.clock.advance(59 * 86400)
    assert _token(sim, {"grant_type": "refresh_token",
                        "refresh_token": tok2["refresh_token"]}).status_code == 200
    sim.clock.advance(2 * 86400)
    r = _token(sim, {"grant_type": "refresh_token", "refresh_token": tok["refresh_token"]})
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_access_token_expiry_and_auth_errors(sim: Sim) -> None:
    tenant, h, tok = sim.grant()
    assert sim.http.get(f"{API}/Contacts", headers=h).status_code == 200
    sim.clock.advance(1801)
    r = sim.http.get(f"{API}/Contacts", headers=h)
    assert r.status_code == 401
    body = r.json()
    assert body["Type"] is None and body["Title"] == "Unauthorized" and body["Status"] == 401
    assert body["Detail"] == "TokenExpired" and uuid.UUID(body["Instance"])
    r = sim.http.get(f"{API}/Contacts", headers={**h, "Authorization": "Bearer nope"})
    assert r.status_code == 401 and r.json()["Detail"] == "AuthenticationUnsuccessful"
    fresh = _token(sim, {"grant_type": "refresh_token",
                         "refresh_token": tok["refresh_token"]}).json()
    h2 = {"Authorization": f"Bearer {fresh['access_token']}", "xero-tenant-id": tenant}
    assert sim.http.get(f"{API}/Contacts", headers=h2).status_code == 200
    missing = sim.http.get(f"{API}/Contacts", headers={"Authorization": h2["Authorization"]})
    assert missing.status_code == 403 and missing.json()["Detail"] == "AuthenticationUnsuccessful"
    other = sim.http.get(f"{API}/Contacts", headers={**h2, "xero-tenant-id": "someone-else"})
    assert other.status_code == 403
    # sandbox hook: expire current access tokens
    assert sim.http.post(f"/_sandbox/tokens/{tenant}/expire").json()["expired"] >= 1
    r = sim.http.get(f"{API}/Contacts", headers=h2)
    assert r.status_code == 401 and r.json()["Detail"] == "TokenExpired"


def test_revocation_drops_grant(sim: Sim) -> None:
    _tenant, h, tok = sim.grant()
    r = sim.http.post("/connect/revocation", data={"token": tok["refresh_token"]},
                      headers=_basic())
    assert r.status_code == 200
    assert sim.http.get(f"{API}/Contacts", headers=h).status_code == 401
    again = _token(sim, {"grant_type": "refresh_token", "refresh_token": tok["refresh_token"]})
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


# ------------------------------------------------------------------------------- Contacts
def test_contacts_create_filter_update_and_duplicates(sim: Sim) -> None:
    _tenant, h, _ = sim.grant()
    r = sim.http.put(f"{API}/Contacts", headers=h, json={"Contacts": [
        {"Name": "O'Brien", "ContactNumber": "C-1", "EmailAddress": "ob@example.com"},
        {"Name": 'Say "Hi" Ltd', "ContactNumber": "C-2"}]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["Status"] == "OK" and uuid.UUID(body["Id"])
    assert body["DateTimeUTC"].startswith("/Date(") and body["DateTimeUTC"].endswith("+0000)/")
    c1 = body["Contacts"][0]
    assert uuid.UUID(c1["ContactID"]) and c1["UpdatedDateUTC"].startswith("/Date(")
    assert c1["StatusAttributeString"] == "OK"

    def where(expr: str) -> list[str]:
        res = sim.http.get(f"{API}/Contacts", headers=h, params={"where": expr})
        assert res.status_code == 200, res.text
        return [c["Name"] for c in res.json()["Contacts"]]

    assert where('Name=="O\'Brien"') == ["O'Brien"]
    assert where('Name=="Say \\"Hi\\" Ltd"') == ['Say "Hi" Ltd']
    assert where('ContactNumber=="C-2"') == ['Say "Hi" Ltd']
    assert where('EmailAddress=="ob@example.com"') == ["O'Brien"]
    assert where('Name=="nobody"') == []
    # duplicate name among active contacts, case-insensitive: exact message
    dup = sim.http.put(f"{API}/Contacts", headers=h, json={"Contacts": [{"Name": "o'brien"}]})
    assert dup.status_code == 400
    err = dup.json()
    assert err["Type"] == "ValidationException" and err["ErrorNumber"] == 10
    assert err["Elements"][0]["ValidationErrors"][0]["Message"] == DUP_MSG.format("o'brien")
    dupnum = sim.http.put(f"{API}/Contacts", headers=h,
                          json={"Contacts": [{"Name": "Other", "ContactNumber": "c-1"}]})
    assert dupnum.status_code == 400 and "contact number" in dupnum.text
    # POST with ContactID updates; POST /Contacts/{id} updates; GET by id
    up = sim.http.post(f"{API}/Contacts", headers=h, json={"Contacts": [
        {"ContactID": c1["ContactID"], "EmailAddress": "new@example.com"}]})
    assert up.status_code == 200 and up.json()["Contacts"][0]["Name"] == "O'Brien"
    arch = sim.http.post(f"{API}/Contacts/{c1['ContactID']}", headers=h,
                         json={"Contacts": [{"ContactStatus": "ARCHIVED"}]})
    assert arch.status_code == 200
    one = sim.http.get(f"{API}/Contacts/{c1['ContactID']}", headers=h).json()["Contacts"][0]
    assert one["EmailAddress"] == "new@example.com" and one["ContactStatus"] == "ARCHIVED"
    # archived names may be reused; archived hidden unless includeArchived
    assert sim.http.put(f"{API}/Contacts", headers=h,
                        json={"Contacts": [{"Name": "O'Brien"}]}).status_code == 200
    listed = sim.http.get(f"{API}/Contacts", headers=h).json()["Contacts"]
    assert len(listed) == 2
    listed = sim.http.get(f"{API}/Contacts", headers=h,
                          params={"includeArchived": "true"}).json()["Contacts"]
    assert len(listed) == 3
    missing = sim.http.get(f"{API}/Contacts/{uuid.uuid4()}", headers=h)
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/plain")
    paged = sim.http.get(f"{API}/Contacts", headers=h,
                         params={"page": 1, "pageSize": 1}).json()
    assert len(paged["Contacts"]) == 1 and paged["pagination"]["itemCount"] == 2


def test_summarize_errors_false_reports_per_element(sim: Sim) -> None:
    tenant, h, _ = sim.grant()
    r = sim.http.put(f"{API}/Contacts", headers=h, params={"summarizeErrors": "false"},
                     json={"Contacts": [{"Name": "A"}, {"Name": "a"}, {"Name": "B"},
                                        {"Name": "C", "ContactStatus": "BOGUS"}]})
    assert r.status_code == 200, r.text
    statuses = [c["StatusAttributeString"] for c in r.json()["Contacts"]]
    assert statuses == ["OK", "ERROR", "OK", "ERROR"]
    errs = r.json()["Contacts"][1]["ValidationErrors"]
    assert errs[0]["Message"] == DUP_MSG.format("a")
    assert "ContactStatus" in r.json()["Contacts"][3]["ValidationErrors"][0]["Message"]
    assert sorted(c["Name"] for c in sim.books(tenant)["Contacts"]) == ["A", "B"]


def test_default_batch_is_all_or_nothing(sim: Sim) -> None:
    tenant, h, _ = sim.grant()
    r = sim.http.put(f"{API}/Contacts", headers=h,
                     json={"Contacts": [{"Name": "Good"}, {"Name": "x" * 256}]})
    assert r.status_code == 400
    assert len(r.json()["Elements"]) == 1
    assert sim.books(tenant)["Contacts"] == []


def test_spec_invalid_bodies_rejected(sim: Sim) -> None:
    tenant, h, _ = sim.grant()
    bad_status = sim.http.put(f"{API}/Contacts", headers=h,
                              json={"Contacts": [{"Name": "X", "ContactStatus": "BOGUS"}]})
    assert bad_status.status_code == 400
    msg = bad_status.json()["Elements"][0]["ValidationErrors"][0]["Message"]
    assert "ContactStatus" in msg and "BOGUS" in msg
    too_long = sim.http.put(f"{API}/Contacts", headers=h,
                            json={"Contacts": [{"Name": "n" * 256}]})
    assert too_long.status_code == 400 and "maximum length of 255" in too_long.text
    wrong_type = sim.http.put(f"{API}/Invoices", headers=h, json={"Invoices": [
        {"Type": "ACCREC", "Status": "BOGUS", "LineItems": [{"Quantity": "two"}]}]})
    assert wrong_type.status_code == 400
    text = wrong_type.text
    assert "Status" in text and "LineItems.0.Quantity" in text
    no_code = sim.http.put(f"{API}/Items", headers=h, json={"Items": [{"Name": "thing"}]})
    assert no_code.status_code == 400 and "'Code' is a required property" in no_code.text
    assert sim.books(tenant)["Contacts"] == []


# ---------------------------------------------------------------------------- Idempotency
def test_idempotency_replay_mismatch_and_expiry(sim: Sim) -> None:
    tenant, h, _ = sim.grant()
    key = {"Idempotency-Key": "k-" + uuid.uuid4().hex}
    body = {"Contacts": [{"Name": "Once"}]}
    a = sim.http.put(f"{API}/Contacts", headers={**h, **key}, json=body)
    b = sim.http.put(f"{API}/Contacts", headers={**h, **key}, json=body)
    assert a.status_code == b.status_code == 200
    assert a.json() == b.json()  # same Id, same ContactID: not re-executed
    assert len(sim.books(tenant)["Contacts"]) == 1
    # replayed errors
    key2 = {"Idempotency-Key": "k-" + uuid.uuid4().hex}
    e1 = sim.http.put(f"{API}/Contacts", headers={**h, **key2}, json=body)
    e2 = sim.http.put(f"{API}/Contacts", headers={**h, **key2}, json=body)
    assert e1.status_code == e2.status_code == 400 and e1.json() == e2.json()
    # same key, different body / method -> 400
    diff = sim.http.put(f"{API}/Contacts", headers={**h, **key},
                        json={"Contacts": [{"Name": "Twice"}]})
    assert diff.status_code == 400 and "Idempotency-Key" in diff.text
    diff = sim.http.post(f"{API}/Contacts", headers={**h, **key}, json=body)
    assert diff.status_code == 400
    too_long = sim.http.put(f"{API}/Contacts", headers={**h, "Idempotency-Key": "k" * 129},
                            json={"Contacts": [{"Name": "Long"}]})
    assert too_long.status_code == 400
    ok128 = sim.http.put(f"{API}/Contacts", headers={**h, "Idempotency-Key": "k" * 128},
                         json={"Contacts": [{"Name": "Long"}]})
    assert ok128.status_code == 200
    # 6 minutes later the key is forgotten: the call runs again (and now duplicates)
    sim.clock.advance(361)
    _, h, _ = sim.grant(tenant)
    c = sim.http.put(f"{API}/Contacts", headers={**h, **key}, json=body)
    assert c.status_code == 400 and DUP_MSG.format("Once") in c.text


# ---------------------------------------------------------------------------- Rate limits
def test_rate_limits_minute_day_app_and_headers() -> None:
    with _serve(XeroLimits(per_minute=3, per_day=5, app_per_minute=7)) as sim:
        _t1, h1, _ = sim.grant()
        r = sim.http.get(f"{API}/Contacts", headers=h1)
        assert r.headers["X-MinLimit-Remaining"] == "2"
        assert r.headers["X-DayLimit-Remaining"] == "4"
        assert r.headers["X-AppMinLimit-Remaining"] == "6"
        sim.http.get(f"{API}/Contacts", headers=h1)
        key = {"Idempotency-Key": "rl-1"}
        first = sim.http.put(f"{API}/Contacts", headers={**h1, **key},
                             json={"Contacts": [{"Name": "RL"}]})
        assert first.status_code == 200
        r = sim.http.put(f"{API}/Contacts", headers={**h1, **key},
                         json={"Contacts": [{"Name": "RL"}]})
        # rate limiting runs before the idempotency check
        assert r.status_code == 429
        assert r.headers["X-Rate-Limit-Problem"] == "minute"
        assert 1 <= int(r.headers["Retry-After"]) <= 60
        assert r.headers["content-type"].startswith("text/plain")
        sim.clock.advance(61)
        sim.http.get(f"{API}/Contacts", headers=h1)
        sim.http.get(f"{API}/Contacts", headers=h1)  # 5 today
        r = sim.http.get(f"{API}/Contacts", headers=h1)
        assert r.status_code == 429 and r.headers["X-Rate-Limit-Problem"] == "day"
        assert int(r.headers["Retry-After"]) > 60
        # app-wide minute: 7 per minute across tenants
        sim.clock.advance(61)
        _t2, h2, _ = sim.grant()
        _t3, h3, _ = sim.grant()
        _t4, h4, _ = sim.grant()
        codes = [sim.http.get(f"{API}/Contacts", headers=h).status_code
                 for h in (h2, h2, h2, h3, h3, h3, h4)]
        assert codes == [200] * 7
        last = sim.http.get(f"{API}/Contacts", headers=h4)
        assert last.status_code == 429 and last.headers["X-Rate-Limit-Problem"] == "appminute"


def _call_into(base: str, headers: dict[str, str], out: list[httpx.Response]) -> None:
    with httpx.Client(base_url=base, timeout=10) as c:
        out.append(c.get(f"{API}/Contacts", headers=headers))


def test_concurrency_limit() -> None:
    with _serve(XeroLimits(concurrent=2)) as sim:
        tenant, h, _ = sim.grant()
        sim.board.set(tenant, FaultPlan(latency_s=0.6))
        results: list[httpx.Response] = []
        threads = [threading.Thread(target=_call_into, args=(sim.base, h, results))
                   for _ in range(3)]
        for t in threads:
            t.start()
            time.sleep(0.05)
        for t in threads:
            t.join()
        codes = sorted(r.status_code for r in results)
        assert codes == [200, 200, 429]
        limited = next(r for r in results if r.status_code == 429)
        assert limited.headers["X-Rate-Limit-Problem"] == "concurrent"
        assert "Retry-After" in limited.headers


# --------------------------------------------------------------------------------- Faults
def test_faults_5xx_throttle_revoked_latency(sim: Sim) -> None:
    tenant, h, tok = sim.grant()
    sim.board.set(tenant, FaultPlan(error_rate=1.0))
    r = sim.http.put(f"{API}/Contacts", headers=h, json={"Contacts": [{"Name": "Z"}]})
    assert r.status_code == 503 and r.text == "The Organisation is offline"
    assert sim.books(tenant)["Contacts"] == []
    sim.board.set(tenant, FaultPlan(throttle_burst=2))
    codes = [sim.http.get(f"{API}/Contacts", headers=h) for _ in range(3)]
    assert [c.status_code for c in codes] == [429, 429, 200]
    assert codes[0].headers["X-Rate-Limit-Problem"] == "minute"
    assert codes[0].headers["Retry-After"]
    sim.board.set(tenant, FaultPlan(latency_s=0.3))
    t0 = time.monotonic()
    assert sim.http.get(f"{API}/Contacts", headers=h).status_code == 200
    assert time.monotonic() - t0 >= 0.3
    sim.board.set(tenant, FaultPlan(revoked=True))
    assert sim.http.get(f"{API}/Contacts", headers=h).status_code == 401
    r = _token(sim, {"grant_type": "refresh_token", "refresh_token": tok["refresh_token"]})
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    sim.board.clear(tenant)


def test_fault_hang_after_apply_then_idempotent_replay(sim: Sim) -> None:
    tenant, h, _ = sim.grant()
    sim.board.set(tenant, FaultPlan(timeout_rate=1.0, hang_s=1.0))
    key = {"Idempotency-Key": uuid.uuid4().hex}
    body = {"Contacts": [{"Name": "Hung"}]}
    with pytest.raises(httpx.ReadTimeout):
        sim.http.put(f"{API}/Contacts", headers={**h, **key}, json=body, timeout=0.3)
    assert [c["Name"] for c in sim.books(tenant)["Contacts"]] == ["Hung"]  # applied
    sim.board.clear(tenant)
    replay = sim.http.put(f"{API}/Contacts", headers={**h, **key}, json=body)
    assert replay.status_code == 200 and replay.json()["Contacts"][0]["Name"] == "Hung"
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert len(sim.books(tenant)["Contacts"]) == 1


# ------------------------------------------------------------------ Items, Accounts, Tax
def test_items_accounts_taxrates(sim: Sim) -> None:
    tenant, h, _ = sim.grant()
    accts = sim.http.get(f"{API}/Accounts", headers=h,
                         params={"where": 'Class=="REVENUE"'}).json()["Accounts"]
    codes = {a["Code"]: a["Name"] for a in accts}
    assert codes["200"] == "Sales" and codes["260"] == "Other Revenue" and "090" not in codes
    all_codes = {a["Code"]: a for a in sim.books(tenant)["Accounts"]}
    assert all_codes["090"]["Type"] == "BANK" and all_codes["860"]["Name"] == "Rounding"
    rates = {t["TaxType"]: t["EffectiveRate"] for t in
             sim.http.get(f"{API}/TaxRates", headers=h).json()["TaxRates"]}
    assert rates["OUTPUT2"] == 15 and rates["NONE"] == 0
    item = {"Code": "WIDGET", "Name": "Widget",
            "SalesDetails": {"UnitPrice": 12.345, "AccountCode": "200", "TaxType": "OUTPUT2"}}
    r = sim.http.put(f"{API}/Items", headers=h, json={"Items": [item]})
    assert r.status_code == 200, r.text
    assert r.json()["Items"][0]["SalesDetails"]["UnitPrice"] == 12.35
    assert sim.http.put(f"{API}/Items", headers=h, json={"Items": [item]}).status_code == 400
    bad_acct = {"Code": "W2", "Name": "W2", "SalesDetails": {"AccountCode": "999"}}
    r = sim.http.put(f"{API}/Items", headers=h, json={"Items": [bad_acct]})
    assert r.status_code == 400 and "999" in r.text
    assert sim.http.put(f"{API}/Items", headers=h,
                        json={"Items": [{"Code": "C" * 31}]}).status_code == 400
    assert sim.http.put(f"{API}/Items", headers=h,
                        json={"Items": [{"Code": "C1", "Name": "N" * 51}]}).status_code == 400
    up = sim.http.post(f"{API}/Items", headers=h, json={"Items": [
        {"Code": "WIDGET", "Name": "Widget v2"}]})
    assert up.status_code == 200 and up.json()["Items"][0]["Name"] == "Widget v2"
    got = sim.http.get(f"{API}/Items", headers=h, params={"where": 'Code=="WIDGET"'}).json()
    assert [i["Name"] for i in got["Items"]] == ["Widget v2"]


# ------------------------------------------------------------------------------- Invoices
def _contact(sim: Sim, h: dict[str, str], name: str) -> str:
    r = sim.http.put(f"{API}/Contacts", headers=h, json={"Contacts": [{"Name": name}]})
    assert r.status_code == 200, r.text
    cid: str = r.json()["Contacts"][0]["ContactID"]
    return cid


def _invoice(sim: Sim, h: dict[str, str], inv: dict[str, Any],
             params: dict[str, str] | None = None) -> httpx.Response:
    """PUT one invoice; a DueDate is added unless the test says otherwise (an AUTHORISED
    invoice without one is refused when the organisation has no default terms)."""
    inv = {"DueDate": "2026-12-31", **inv}
    return sim.http.put(f"{API}/Invoices", headers=h, json={"Invoices": [inv]},
                        params=params or {})


def test_invoice_totals_exclusive_inclusive_notax(sim: Sim) -> None:
    _tenant, h, _ = sim.grant()
    cid = _contact(sim, h, "Totals Ltd")
    lines = [
        {"Description": "a", "Quantity": 3, "UnitAmount": 9.99, "AccountCode": "200",
         "DiscountRate": 10},  # 26.973 -> 26.97, tax 4.0455 -> 4.05
        {"Description": "b", "Quantity": 1, "UnitAmount": 1.03, "AccountCode": "200"},
        {"Description": "c", "Quantity": 1, "UnitAmount": 1.03, "AccountCode": "200"},
        {"Description": "d", "Quantity": 1, "UnitAmount": 1.03, "AccountCode": "200"},
        # each 0.1545 -> 0.15 per line (0.45), not round(0.4635) = 0.46
    ]
    r = _invoice(sim, h, {"Type": "ACCREC", "Contact": {"ContactID": cid}, "LineItems": lines,
                          "Status": "AUTHORISED", "Total": 999})
    assert r.status_code == 200, r.text
    inv = r.json()["Invoices"][0]
    assert [li["LineAmount"] for li in inv["LineItems"]] == [26.97, 1.03, 1.03, 1.03]
    assert [li["TaxAmount"] for li in inv["LineItems"]] == [4.05, 0.15, 0.15, 0.15]
    assert inv["SubTotal"] == 30.06 and inv["TotalTax"] == 4.50 and inv["Total"] == 34.56
    assert inv["AmountDue"] == 34.56 and inv["AmountPaid"] == 0
    assert inv["LineAmountTypes"] == "Exclusive" and inv["Status"] == "AUTHORISED"
    assert inv["InvoiceNumber"]
    # Inclusive: tax = LineAmount * 15 / 115 per line
    r = _invoice(sim, h, {"Type": "ACCREC", "Contact": {"ContactID": cid},
                          "LineAmountTypes": "Inclusive",
                          "LineItems": [{"Description": "x", "Quantity": 2, "UnitAmount": 57.5,
                                         "AccountCode": "200", "DiscountRate": 20}]})
    inv = r.json()["Invoices"][0]
    assert inv["LineItems"][0]["LineAmount"] == 92.0 and inv["TotalTax"] == 12.0
    assert inv["SubTotal"] == 80.0 and inv["Total"] == 92.0 and inv["Status"] == "DRAFT"
    # NoTax
    r = _invoice(sim, h, {"Type": "ACCREC", "Contact": {"ContactID": cid},
                          "LineAmountTypes": "NoTax",
                          "LineItems": [{"Description": "x", "Quantity": 1.23456,
                                         "UnitAmount": 10.005, "AccountCode": "200"}]})
    inv = r.json()["Invoices"][0]
    # Quantity 4 dp (1.2346), UnitAmount 2 dp (10.01) -> 12.358346 -> 12.36
    assert inv["LineItems"][0]["Quantity"] == 1.2346
    assert inv["LineItems"][0]["UnitAmount"] == 10.01
    assert inv["Total"] == 12.36 and inv["TotalTax"] == 0
    # unitdp=4 keeps 4 dp on UnitAmount
    r = _invoice(sim, h, {"Type": "ACCREC", "Contact": {"ContactID": cid},
                          "LineItems": [{"Description": "x", "Quantity": 3,
                                         "UnitAmount": 0.3333, "AccountCode": "200"}]},
                 params={"unitdp": "4"})
    inv = r.json()["Invoices"][0]
    assert inv["LineItems"][0]["UnitAmount"] == 0.3333 and inv["SubTotal"] == 1.0
    # item defaults fill price/account/tax
    sim.http.put(f"{API}/Items", headers=h, json={"Items": [
        {"Code": "HOUR", "Name": "Hour", "SalesDetails": {"UnitPrice": 100,
                                                          "AccountCode": "260"}}]})
    r = _invoice(sim, h, {"Type": "ACCREC", "Contact": {"ContactID": cid},
                          "Status": "AUTHORISED",
                          "LineItems": [{"ItemCode": "HOUR", "Quantity": 2}]})
    inv = r.json()["Invoices"][0]
    assert inv["LineItems"][0]["AccountCode"] == "260" and inv["Total"] == 230.0


def test_invoice_rules_number_contact_and_status(sim: Sim) -> None:
    _tenant, h, _ = sim.grant()
    cid = _contact(sim, h, "Rules Ltd")
    line = [{"Description": "x", "Quantity": 1, "UnitAmount": 10, "AccountCode": "200"}]
    base = {"Type": "ACCREC", "Contact": {"ContactID": cid}, "LineItems": line}
    assert _invoice(sim, h, {**base, "InvoiceNumber": "N-1"}).status_code == 200
    dup = _invoice(sim, h, {**base, "InvoiceNumber": "N-1"})
    assert dup.status_code == 400 and "Invoice # must be unique." in dup.text
    nocontact = _invoice(sim, h, {**base, "Contact": {"ContactID": str(uuid.uuid4())}})
    assert nocontact.status_code == 400
    # drafts can be deleted but not voided
    d = _invoice(sim, h, base).json()["Invoices"][0]
    url = f"{API}/Invoices/{d['InvoiceID']}"
    assert sim.http.post(url, headers=h,
                         json={"Invoices": [{"Status": "VOIDED"}]}).status_code == 400
    assert sim.http.post(url, headers=h, json={"Invoices": [{"Status": "DELETED"}]}
                         ).json()["Invoices"][0]["Status"] == "DELETED"
    assert sim.http.post(url, headers=h,
                         json={"Invoices": [{"Reference": "late"}]}).status_code == 400
    # authorised: can't delete, can void; last write wins on edits
    a = _invoice(sim, h, {**base, "Status": "AUTHORISED"}).json()["Invoices"][0]
    url = f"{API}/Invoices/{a['InvoiceID']}"
    assert sim.http.post(url, headers=h,
                         json={"Invoices": [{"Status": "DELETED"}]}).status_code == 400
    edit = sim.http.post(url, headers=h, json={"Invoices": [{"LineItems": [
        {"Description": "y", "Quantity": 2, "UnitAmount": 10, "AccountCode": "200"}]}]})
    assert edit.status_code == 200 and edit.json()["Invoices"][0]["Total"] == 23.0
    assert sim.http.post(url, headers=h, json={"Invoices": [{"Status": "VOIDED"}]}
                         ).json()["Invoices"][0]["Status"] == "VOIDED"
    got = sim.http.get(f"{API}/Invoices", headers=h,
                       params={"where": 'Status=="VOIDED"'}).json()["Invoices"]
    assert [i["InvoiceID"] for i in got] == [a["InvoiceID"]]
    assert sim.http.get(f"{API}/Invoices/N-1", headers=h).status_code == 200


# ------------------------------------------------------------------------------- Payments
def test_payments_and_if_modified_since(sim: Sim) -> None:
    _tenant, h, _ = sim.grant()
    cid = _contact(sim, h, "Payer Ltd")
    inv = _invoice(sim, h, {"Type": "ACCREC", "Contact": {"ContactID": cid},
                            "Status": "AUTHORISED", "LineItems": [
                                {"Description": "x", "Quantity": 1, "UnitAmount": 100,
                                 "AccountCode": "200"}]}).json()["Invoices"][0]
    iid = inv["InvoiceID"]
    assert inv["Total"] == 115.0

    def pay(amount: float, code: str = "090") -> httpx.Response:
        return sim.http.put(f"{API}/Payments", headers=h, json={"Payments": [
            {"Invoice": {"InvoiceID": iid}, "Account": {"Code": code},
             "Date": "2024-03-12", "Amount": amount, "Reference": "r"}]})

    over = pay(115.01)
    assert over.status_code == 400 and "exceeds the amount outstanding" in over.text
    assert pay(10, code="200").status_code == 400  # not a bank account
    p1 = pay(15)
    assert p1.status_code == 200, p1.text
    got = sim.http.get(f"{API}/Invoices/{iid}", headers=h).json()["Invoices"][0]
    assert got["AmountPaid"] == 15 and got["AmountDue"] == 100 and got["Status"] == "AUTHORISED"
    # paid invoices can't change lines or be voided
    locked = sim.http.post(f"{API}/Invoices/{iid}", headers=h, json={"Invoices": [
        {"LineItems": [{"Description": "z", "Quantity": 1, "UnitAmount": 1,
                        "AccountCode": "200"}]}]})
    assert locked.status_code == 400
    assert sim.http.post(f"{API}/Invoices/{iid}", headers=h, json={"Invoices": [
        {"Status": "VOIDED"}]}).status_code == 400
    sim.clock.advance(5)
    since = sim.clock.now
    sim.clock.advance(5)
    p2 = pay(100)
    assert p2.status_code == 200
    got = sim.http.get(f"{API}/Invoices/{iid}", headers=h).json()["Invoices"][0]
    assert got["Status"] == "PAID" and got["AmountDue"] == 0 and len(got["Payments"]) == 2
    # If-Modified-Since
    ims = {"If-Modified-Since": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(since))}
    pays = sim.http.get(f"{API}/Payments", headers={**h, **ims}).json()["Payments"]
    assert [p["Amount"] for p in pays] == [100]
    invs = sim.http.get(f"{API}/Invoices", headers={**h, **ims}).json()["Invoices"]
    assert [i["InvoiceID"] for i in invs] == [iid]
    assert sim.http.get(f"{API}/Contacts", headers={**h, **ims}).json()["Contacts"] == []
    assert len(sim.http.get(f"{API}/Payments", headers=h).json()["Payments"]) == 2
    # delete a payment -> invoice back to AUTHORISED
    pid = p2.json()["Payments"][0]["PaymentID"]
    d = sim.http.post(f"{API}/Payments/{pid}", headers=h,
                      json={"Payments": [{"Status": "DELETED"}]})
    assert d.status_code == 200 and d.json()["Payments"][0]["Status"] == "DELETED"
    got = sim.http.get(f"{API}/Invoices/{iid}", headers=h).json()["Invoices"][0]
    assert got["Status"] == "AUTHORISED" and got["AmountDue"] == 100
    assert sim.http.post(f"{API}/Payments/{uuid.uuid4()}", headers=h,
                         json={"Payments": [{"Status": "DELETED"}]}).status_code == 404


def test_seed_and_books_dump(sim: Sim) -> None:
    tenant = str(uuid.uuid4())
    r = sim.http.post(f"/_sandbox/seed/{tenant}", json={
        "TenantName": "Seeded Org",
        "Accounts": [{"Code": "205", "Name": "Consulting", "Type": "SALES"}],
        "Contacts": [{"Name": "Existing Customer", "ContactNumber": "BC-1"}],
        "Items": [{"Code": "SEED", "Name": "Seeded", "SalesDetails": {"AccountCode": "205"}}]})
    assert r.status_code == 200, r.text
    dump = sim.books(tenant)
    assert dump["tenantName"] == "Seeded Org"
    assert [c["Name"] for c in dump["Contacts"]] == ["Existing Customer"]
    assert any(a["Code"] == "205" and a["Class"] == "REVENUE" for a in dump["Accounts"])
    bad = sim.http.post(f"/_sandbox/seed/{tenant}",
                        json={"Contacts": [{"Name": "New"}, {"Name": "existing customer"}]})
    assert bad.status_code == 400
    assert len(sim.books(tenant)["Contacts"]) == 1
    _, h, _ = sim.grant(tenant)
    conns = sim.http.get("/connections", headers={"Authorization": h["Authorization"]}).json()
    assert conns[0]["tenantName"] == "Seeded Org"


def test_mounted_under_prefix_consent_form_posts_to_mount() -> None:
    from fastapi import FastAPI

    outer = FastAPI()
    outer.mount("/xero", create_app())
    with serve_in_thread(outer) as base, httpx.Client(base_url=base) as http:
        params = {"client_id": CLIENT, "response_type": "code", "redirect_uri": REDIRECT,
                  "scope": "offline_access", "state": "s"}
        page = http.get("/xero/identity/connect/authorize", params=params)
        assert 'action="/xero/identity/connect/authorize/decision"' in page.text
        r = http.post("/xero/identity/connect/authorize/decision",
                      data={**params, "decision": "approve", "tenant": "t-mounted"})
        code = parse_qs(urlparse(r.headers["location"]).query)["code"][0]
        tok = http.post("/xero/connect/token", headers=_basic(), data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT})
        assert tok.status_code == 200
        h = {"Authorization": f"Bearer {tok.json()['access_token']}",
             "xero-tenant-id": "t-mounted"}
        assert http.get("/xero/api.xro/2.0/Contacts", headers=h).status_code == 200


def test_fault_plans_match_tenant_id_as_sent(sim: Sim) -> None:
    tenant = str(uuid.uuid4()).upper()
    _, h, _ = sim.grant(tenant)
    sim.board.set(tenant, FaultPlan(error_rate=1.0))
    assert sim.http.get(f"{API}/Contacts", headers=h).status_code == 503
    sim.board.clear(tenant)
    assert sim.http.get(f"{API}/Contacts", headers=h).status_code == 200
