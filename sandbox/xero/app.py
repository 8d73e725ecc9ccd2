"""Xero Accounting API 2.0 simulator (paths without the `/xero` mount prefix).

See `sandbox/README.md` for the shared conventions and `sandbox/xero/__init__.py`
for the list of endpoints and the documented choices.

Order of checks on `/api.xro/2.0/...`:
bearer token (401) -> `xero-tenant-id` connected to the grant (403) -> fault `revoked`
(401) -> fault `throttle` (429 minute) -> rate limits (429) -> fault latency ->
`Idempotency-Key` (length 400, replay, mismatch 400) -> fault `fail_5xx` (503, no
effect, not cached) -> apply -> cache the idempotent response -> fault hang -> fault
`fail_5xx_after_apply` (writes: 500/503 although applied; the cache keeps the applied
response) -> reply.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import hashlib
import html
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)

from sandbox.faults import FaultSwitchboard, fault_router
from sandbox.xero.books import Books, ElementResult, msdate, parse_xero_date
from sandbox.xero.errors import ApiError, auth_problem, not_found, offline, validation_body
from sandbox.xero.limits import RateLimiter, XeroLimits
from sandbox.xero.oauth import OAuthError, OAuthState
from sandbox.xero.where import WhereError, compile_where

__all__ = ["DEFAULT_CLIENTS", "DEFAULT_SCOPE", "ManualClock", "XeroSim", "create_app"]

DEFAULT_CLIENTS = {"blueclerk-local": "local-secret"}
DEFAULT_SCOPE = ("offline_access accounting.transactions accounting.contacts "
                 "accounting.settings")
MAX_BODY = 3_500_000


class ManualClock:
    """An injectable clock for tests: `clock.advance(1801)`."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class _Cached:
    fingerprint: str
    created: float
    status: int
    body: bytes
    media_type: str


class XeroSim:
    """All simulator state; reachable from tests as `app.state.xero`."""

    def __init__(self, board: FaultSwitchboard, limits: XeroLimits, clients: dict[str, str],
                 clock: Callable[[], float]) -> None:
        self.board = board
        self.limits = limits
        self.clients = clients
        self.clock = clock
        self.oauth = OAuthState(clients, limits, clock)
        self.limiter = RateLimiter(limits)
        self.books: dict[str, Books] = {}
        self.idem: dict[tuple[str, str], _Cached] = {}

    def tenant(self, tenant_id: str, name: str | None = None) -> Books:
        tid = tenant_id
        b = self.books.get(tid)
        if b is None:
            b = self.books[tid] = Books(tid, self.clock, name)
        elif name:
            b.name = name
        return b

    def tenant_name(self, tenant_id: str) -> str:
        return self.tenant(tenant_id).name


def _envelope(sim: XeroSim, provider: str, key: str, records: list[dict[str, Any]],
              extra: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"Id": str(uuid.uuid4()), "Status": "OK", "ProviderName": provider,
                           "DateTimeUTC": msdate(sim.clock())}
    if extra:
        out.update(extra)
    out[key] = records
    return out


def _bearer(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return None


def _client_credentials(request: Request, form: dict[str, str]) -> tuple[str | None, str | None]:
    auth = request.headers.get("authorization", "")
    if auth[:6].lower() == "basic ":
        try:
            raw = base64.b64decode(auth[6:].strip()).decode()
            cid, _, secret = raw.partition(":")
            return cid, secret
        except (ValueError, UnicodeDecodeError):
            return None, None
    return form.get("client_id"), form.get("client_secret")


def _parse_since(value: str) -> float | None:
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        pass
    return parse_xero_date(value)


def _after_apply_error(n: int) -> Response:
    """A 5xx for a write that was applied: 503 "The Organisation is offline" or 500
    (X-codes lists both; the 500 body text is the simulator's, an assumption)."""
    if n % 2:
        return offline()
    return PlainTextResponse("Internal Server Error", status_code=500)


def _validation(message: str) -> ApiError:
    return ApiError(400, validation_body([], message))


# ---------------------------------------------------------------------------------------
# Accounting API: reads
# ---------------------------------------------------------------------------------------
_COLLECTIONS = {
    "contacts": ("Contacts", "ContactID"),
    "items": ("Items", "ItemID"),
    "accounts": ("Accounts", "AccountID"),
    "taxrates": ("TaxRates", "TaxType"),
    "invoices": ("Invoices", "InvoiceID"),
    "payments": ("Payments", "PaymentID"),
}
_PAGED = {"contacts", "invoices", "payments"}


def _source(books: Books, coll: str) -> dict[str, dict[str, Any]]:
    return {"contacts": books.contacts, "items": books.items, "accounts": books.accounts,
            "taxrates": books.tax_rates, "invoices": books.invoices,
            "payments": books.payments}[coll]


def _render(books: Books, coll: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if coll == "contacts":
        return books.render_contacts(rows)
    if coll == "invoices":
        return books.render_invoices(rows)
    one = {"items": books.render_item, "accounts": books.render_account,
           "taxrates": books.render_tax_rate, "payments": books.render_payment}[coll]
    return [one(r) for r in rows]


def _records(books: Books, coll: str,
             keep: Callable[[dict[str, Any]], bool] | None = None
             ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(stored, rendered) pairs, optionally pre-filtered on the stored record."""
    stored = [r for r in _source(books, coll).values() if keep is None or keep(r)]
    return list(zip(stored, _render(books, coll, stored), strict=True))


def _find_one(books: Books, coll: str, ident: str) -> dict[str, Any] | None:
    key = _COLLECTIONS[coll][1]
    low = ident.lower()
    alt = {"contacts": "ContactNumber", "items": "Code", "invoices": "InvoiceNumber",
           "accounts": "Code"}.get(coll)
    for field in (key, alt):
        if field is None:
            continue
        hits = [r for r in _source(books, coll).values()
                if str(r.get(field, "")).lower() == low]
        if hits:
            return _render(books, coll, hits[:1])[0]
    return None


def _list(sim: XeroSim, books: Books, coll: str, request: Request, provider: str) -> Response:
    q = request.query_params
    since_raw = request.headers.get("if-modified-since")
    keep: Callable[[dict[str, Any]], bool] | None = None
    if since_raw and coll in ("contacts", "invoices", "payments", "items", "accounts"):
        since = _parse_since(since_raw)
        if since is None:
            raise _validation(f"If-Modified-Since '{since_raw}' is not a valid date")
        keep = lambda rec: float(rec.get("_updated", 0)) >= since  # noqa: E731
    rows = [r for _, r in _records(books, coll, keep)]
    if coll == "contacts" and q.get("includeArchived", "").lower() != "true":
        rows = [r for r in rows if r.get("ContactStatus") != "ARCHIVED"]
    id_key = _COLLECTIONS[coll][1]
    for param, key in (("IDs", id_key), ("InvoiceNumbers", "InvoiceNumber"),
                       ("Statuses", "Status")):
        if q.get(param):
            wanted = {x.strip().lower() for x in q[param].split(",") if x.strip()}
            rows = [r for r in rows if str(r.get(key, "")).lower() in wanted]
    if q.get("ContactIDs") and coll == "invoices":
        wanted = {x.strip().lower() for x in q["ContactIDs"].split(",")}
        rows = [r for r in rows if r["Contact"]["ContactID"].lower() in wanted]
    if q.get("searchTerm") and coll == "contacts":
        term = q["searchTerm"].casefold()
        rows = [r for r in rows if any(term in str(r.get(f, "")).casefold() for f in
                                       ("Name", "FirstName", "LastName", "ContactNumber",
                                        "CompanyNumber", "EmailAddress"))]
    if q.get("where"):
        try:
            pred = compile_where(q["where"])
        except WhereError as exc:
            raise _validation(str(exc)) from exc
        rows = [r for r in rows if pred(r)]
    if q.get("order"):
        field, _, direction = q["order"].strip().partition(" ")
        rows.sort(key=lambda r: (r.get(field) is None, str(r.get(field, "")).casefold()
                                 if not isinstance(r.get(field), int | float)
                                 else f"{r.get(field):020.4f}"),
                  reverse=direction.strip().upper() == "DESC")
    extra: dict[str, Any] = {}
    if q.get("page") and coll in _PAGED:
        try:
            page = max(1, int(q["page"]))
            size = int(q.get("pageSize") or sim.limits.page_size)
        except ValueError as exc:
            raise _validation("page and pageSize must be integers") from exc
        size = max(1, min(size, sim.limits.max_page_size))
        total = len(rows)
        rows = rows[(page - 1) * size: page * size]
        extra["pagination"] = {"page": page, "pageSize": size,
                               "pageCount": (total + size - 1) // size, "itemCount": total}
    if q.get("summaryOnly", "").lower() == "true" and coll == "contacts":
        heavy = ("IsCustomer", "IsSupplier", "Addresses", "Phones", "ContactPersons",
                 "Balances", "PaymentTerms")
        rows = [{k: v for k, v in r.items() if k not in heavy} for r in rows]
    return JSONResponse(_envelope(sim, provider, _COLLECTIONS[coll][0], rows, extra))


# ---------------------------------------------------------------------------------------
# Accounting API: writes
# ---------------------------------------------------------------------------------------
def _elements(body: Any, key: str) -> list[Any]:
    if isinstance(body, dict):
        for k, v in body.items():
            if k.lower() == key.lower():
                if not isinstance(v, list):
                    raise _validation(f"{key} must be an array")
                return v
        return [body]
    if isinstance(body, list):
        return body
    raise _validation("The request body must be a JSON object")


def _write(sim: XeroSim, books: Books, coll: str, ident: str | None, method: str,
           body: Any, request: Request, provider: str) -> Response:
    q = request.query_params
    summarize = q.get("summarizeErrors", "true").lower() != "false"
    try:
        unitdp = 4 if int(q.get("unitdp", "2")) == 4 else 2
    except ValueError:
        unitdp = 2
    key = _COLLECTIONS[coll][0]
    kind = key
    if coll == "payments" and ident is not None:
        kind = "PaymentDelete"
        if ident.lower() not in books.payments:
            return not_found()
    elif ident is not None:
        store = {"contacts": books.contacts, "items": books.items,
                 "invoices": books.invoices}.get(coll)
        if store is None:
            return not_found()
        if ident.lower() not in store:
            return not_found()
    if coll == "taxrates" or (coll == "accounts" and ident is not None):
        return PlainTextResponse("Method not supported by this simulator", status_code=405)
    elements = _elements(body, key)
    if not elements:
        raise _validation(f"No {key} were supplied")
    snap = books.snapshot() if summarize and len(elements) > 1 else None
    results: list[ElementResult] = [
        books.write(kind, el, path_id=ident, unitdp=unitdp, method=method) for el in elements
    ]
    failed = [r for r in results if not r.ok]
    if failed and summarize:
        if snap is not None:
            books.restore(snap)
        elems = [{**r.record, "ValidationErrors": [{"Message": m} for m in r.errors]}
                 for r in failed]
        return JSONResponse(validation_body(elems), status_code=400)
    out: list[dict[str, Any]] = []
    for r in results:
        if r.ok:
            out.append({**r.record, "StatusAttributeString": "OK"})
        else:
            out.append({**r.record, "StatusAttributeString": "ERROR",
                        "HasValidationErrors": True,
                        "ValidationErrors": [{"Message": m} for m in r.errors]})
    return JSONResponse(_envelope(sim, provider, key, out))


# ---------------------------------------------------------------------------------------
# The app
# ---------------------------------------------------------------------------------------
_CONSENT = """<!doctype html><html><head><title>Xero | Authorise app</title></head><body>
<h1>{client} wants to access your Xero organisation</h1>
<p>Scopes: {scope}</p>
<form method="post" action="{action}">
{hidden}
<label>Organisation (tenant id, comma separated for several)
<input name="tenant" value="{tenant}"></label>
<button name="decision" value="approve">Allow access</button>
<button name="decision" value="deny">Cancel</button>
</form></body></html>"""


def create_app(board: FaultSwitchboard | None = None, limits: XeroLimits | None = None,
               clients: dict[str, str] | None = None, *,
               clock: Callable[[], float] | None = None) -> FastAPI:
    """Build the simulator. `clock` (epoch seconds) drives token expiry, rate windows,
    idempotency TTL and record timestamps; tests pass a `ManualClock`."""
    board = board if board is not None else FaultSwitchboard()
    sim = XeroSim(board, limits or XeroLimits(), dict(clients or DEFAULT_CLIENTS),
                  clock or time.time)
    app = FastAPI(title="Xero Accounting API simulator", docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.xero = sim
    app.include_router(fault_router(board))

    # -- OAuth --------------------------------------------------------------------------
    @app.get("/identity/connect/authorize")
    async def authorize(request: Request) -> Response:
        q = dict(request.query_params)
        if q.get("client_id") not in sim.clients:
            return HTMLResponse("<h1>Error: unauthorized_client</h1>", status_code=400)
        if q.get("response_type") != "code":
            return HTMLResponse("<h1>Error: unsupported_response_type</h1>", status_code=400)
        if not q.get("redirect_uri"):
            return HTMLResponse("<h1>Error: invalid_request (redirect_uri)</h1>", status_code=400)
        if q.get("code_challenge") and q.get("code_challenge_method", "plain") not in (
                "S256", "plain"):
            return HTMLResponse("<h1>Error: invalid_request (code_challenge_method)</h1>",
                                status_code=400)
        hidden = "\n".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in q.items() if k not in ("tenant", "decision"))
        default_tenant = next(iter(sim.books), str(uuid.uuid4()))
        page = _CONSENT.format(client=html.escape(q["client_id"]),
                               scope=html.escape(q.get("scope", "")),
                               action=html.escape(str(request.scope.get("root_path", ""))
                                                  + "/identity/connect/authorize/decision"),
                               hidden=hidden, tenant=html.escape(default_tenant))
        return HTMLResponse(page)

    @app.post("/identity/connect/authorize/decision")
    async def decide(request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        redirect = form.get("redirect_uri", "")
        if form.get("client_id") not in sim.clients or not redirect:
            return HTMLResponse("<h1>Error: invalid_request</h1>", status_code=400)
        if form.get("response_type", "code") != "code":
            return HTMLResponse("<h1>Error: unsupported_response_type</h1>", status_code=400)
        sep = "&" if "?" in redirect else "?"
        state = {"state": form["state"]} if "state" in form else {}
        if form.get("decision") != "approve":
            return RedirectResponse(redirect + sep + urlencode(
                {"error": "access_denied", **state}), status_code=302)
        tenants = [t.strip() for t in form.get("tenant", "").split(",") if t.strip()]
        if not tenants:
            return HTMLResponse("<h1>Choose an organisation</h1>", status_code=400)
        for t in tenants:
            sim.tenant(t)
        code = sim.oauth.issue_code(form["client_id"], redirect, form.get("scope", ""),
                                    tenants, form.get("code_challenge") or None,
                                    form.get("code_challenge_method", "plain"),
                                    user=form.get("user") or None)
        return RedirectResponse(redirect + sep + urlencode({"code": code, **state}),
                                status_code=302)

    def _token_response(payload: dict[str, Any]) -> JSONResponse:
        if "offline_access" not in payload["scope"].split():
            payload = {k: v for k, v in payload.items() if k != "refresh_token"}
        return JSONResponse(payload, headers={"Cache-Control": "no-store"})

    @app.post("/connect/token")
    async def token(request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        cid, secret = _client_credentials(request, form)
        grant_type = form.get("grant_type")
        try:
            if grant_type == "authorization_code":
                code = sim.oauth.codes.get(form.get("code", ""))
                public_ok = code is not None and code.challenge is not None
                client = sim.oauth.check_client(cid, secret, public_ok=public_ok)
                payload = sim.oauth.exchange_code(form.get("code", ""), client,
                                                  form.get("redirect_uri"),
                                                  form.get("code_verifier"))
            elif grant_type == "refresh_token":
                client = sim.oauth.check_client(cid, secret, public_ok=True)
                payload = sim.oauth.refresh(form.get("refresh_token", ""), client,
                                            lambda t: board.plan(t).revoked)
            else:
                raise OAuthError("unsupported_grant_type")
        except OAuthError as exc:
            body: dict[str, Any] = {"error": exc.error}
            if exc.description:
                body["error_description"] = exc.description
            return JSONResponse(body, status_code=exc.status)
        return _token_response(payload)

    @app.post("/connect/revocation")
    async def revocation(request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        cid, secret = _client_credentials(request, form)
        try:
            sim.oauth.check_client(cid, secret, public_ok=True)
        except OAuthError as exc:
            return JSONResponse({"error": exc.error}, status_code=exc.status)
        sim.oauth.revoke(form.get("token", ""))
        return Response(status_code=200)

    def _connections_grant(request: Request) -> tuple[Any, Response | None]:
        token_ = _bearer(request)
        grant, detail = sim.oauth.grant_for(token_) if token_ else (None,
                                                                   "AuthenticationUnsuccessful")
        if grant is None:
            return None, auth_problem(401, detail)
        return grant, None

    conn = APIRouter()

    @conn.get("/connections")
    async def connections(request: Request) -> Response:
        grant, err = _connections_grant(request)
        if err is not None:
            return err
        rows = [c.render(sim.tenant_name(t)) for t, c in grant.connections.items()]
        if request.query_params.get("authEventId"):
            rows = [r for r in rows if r["authEventId"] == request.query_params["authEventId"]]
        return JSONResponse(rows)

    @conn.delete("/connections/{connection_id}")
    async def delete_connection(connection_id: str, request: Request) -> Response:
        grant, err = _connections_grant(request)
        if err is not None:
            return err
        for t, c in list(grant.connections.items()):
            if c.id == connection_id.lower():
                del grant.connections[t]
                return Response(status_code=204)
        return PlainTextResponse("Not Found", status_code=404)

    app.include_router(conn)
    app.add_api_route("/Connections", connections, methods=["GET"], include_in_schema=False)
    app.add_api_route("/Connections/{connection_id}", delete_connection, methods=["DELETE"],
                      include_in_schema=False)

    # -- sandbox hooks ------------------------------------------------------------------
    @app.post("/_sandbox/grants")
    async def sandbox_grant(request: Request) -> Response:
        body = await request.json()
        tenants = body.get("tenants") or [body.get("tenant")]
        tenants = [str(t) for t in tenants if t]
        if not tenants:
            return JSONResponse({"error": "tenant required"}, status_code=400)
        client_id = body.get("client_id") or next(iter(sim.clients))
        for t in tenants:
            sim.tenant(t, body.get("tenantName"))
        payload = sim.oauth.issue_direct(client_id, body.get("scope") or DEFAULT_SCOPE, tenants)
        return _token_response(payload)

    @app.post("/_sandbox/tokens/{tenant}/expire")
    async def sandbox_expire(tenant: str) -> dict[str, int]:
        return {"expired": sim.oauth.expire_access(tenant)}

    @app.get("/_sandbox/books/{tenant}")
    async def sandbox_books(tenant: str) -> dict[str, Any]:
        return sim.tenant(tenant).dump()

    @app.post("/_sandbox/seed/{tenant}")
    async def sandbox_seed(tenant: str, request: Request) -> Response:
        body = await request.json()
        books = sim.tenant(tenant, body.get("TenantName") or body.get("tenantName"))
        snap = books.snapshot()
        failed: list[dict[str, Any]] = []
        if "Region" in body:
            msgs = books.set_region(body["Region"])
            if msgs:
                failed.append({"Region": body["Region"], "ValidationErrors":
                               [{"Message": m} for m in msgs]})
        if "Organisation" in body:
            msgs = books.set_organisation(body["Organisation"])
            if msgs:
                failed.append({"Organisation": body["Organisation"], "ValidationErrors":
                               [{"Message": m} for m in msgs]})
        for el in body.get("TaxRates") or []:
            msgs = books.add_tax_rate(el) if isinstance(el, dict) else ["not an object"]
            if msgs:
                failed.append({**(el if isinstance(el, dict) else {}), "ValidationErrors":
                               [{"Message": m} for m in msgs]})
        for key in ("Accounts", "Contacts", "Items", "Invoices", "Payments"):
            for el in body.get(key) or []:
                r = books.write(key, el, method="PUT")
                if not r.ok:
                    failed.append({**r.record, "ValidationErrors":
                                   [{"Message": m} for m in r.errors]})
        if failed:
            books.restore(snap)
            return JSONResponse(validation_body(failed), status_code=400)
        return JSONResponse(books.dump())

    # -- accounting API -------------------------------------------------------------------
    def _rate_headers(resp: Response, tenant: str | None) -> Response:
        for k, v in sim.limiter.headers(tenant, sim.clock()).items():
            resp.headers[k] = v
        return resp

    async def _dispatch(request: Request, books: Books, coll: str, ident: str | None,
                        method: str, raw: bytes, provider: str) -> Response:
        if method == "GET":
            if ident is None:
                return _list(sim, books, coll, request, provider)
            found = _find_one(books, coll, ident)
            if found is None:
                return not_found()
            return JSONResponse(_envelope(sim, provider, _COLLECTIONS[coll][0], [found]))
        if method == "DELETE":
            if coll == "items" and ident is not None and books.delete_item(ident):
                return Response(status_code=204)
            return not_found()
        try:
            body = json.loads(raw or b"null")
        except ValueError as exc:
            raise _validation("The request body is not valid JSON") from exc
        return _write(sim, books, coll, ident, method, body, request, provider)

    async def _handle(request: Request, path: str) -> Response:
        method = request.method
        token_ = _bearer(request)
        grant, detail = sim.oauth.grant_for(token_) if token_ else (None,
                                                                   "AuthenticationUnsuccessful")
        if grant is None:
            return _rate_headers(auth_problem(401, detail), None)
        tenant = (request.headers.get("xero-tenant-id") or "").strip()
        if not tenant or tenant not in grant.connections:
            return _rate_headers(auth_problem(403, "AuthenticationUnsuccessful"), None)
        decision = board.decide(tenant)
        if decision.revoked:
            return _rate_headers(auth_problem(401, "AuthenticationUnsuccessful"), None)
        if decision.throttle:
            resp: Response = PlainTextResponse(
                "You have exceeded the minute rate limit (simulated)",
                                     status_code=429, headers={"Retry-After": "1",
                                                               "X-Rate-Limit-Problem": "minute"})
            return _rate_headers(resp, tenant)
        adm = sim.limiter.admit(tenant, sim.clock())
        if not adm.ok:
            return PlainTextResponse(
                f"Rate limit exceeded: {adm.problem}", status_code=429,
                headers={**adm.headers, "Retry-After": str(adm.retry_after),
                         "X-Rate-Limit-Problem": adm.problem})
        try:
            if decision.latency_s > 0:
                await asyncio.sleep(decision.latency_s)
            parts = [p for p in path.split("/") if p]
            coll = parts[0].lower() if parts else ""
            if coll == "organisation" and method == "GET":
                books = sim.tenant(tenant)
                org: dict[str, Any] = {
                    "OrganisationID": tenant, "Name": books.name,
                    "BaseCurrency": books.region.currency,
                    "CountryCode": books.region.country, "OrganisationType": "COMPANY",
                    "IsDemoCompany": True, "Version": books.region.code,
                    "OrganisationStatus": "ACTIVE"}
                if books.sales_terms:
                    org["PaymentTerms"] = {"Sales": dict(books.sales_terms)}
                return _rate_headers(JSONResponse(_envelope(sim, grant.client_id,
                                                            "Organisations", [org])), tenant)
            if coll not in _COLLECTIONS or len(parts) > 2:
                return _rate_headers(not_found(), tenant)
            ident = parts[1] if len(parts) == 2 else None
            raw = await request.body()
            if len(raw) > MAX_BODY:
                return _rate_headers(PlainTextResponse("Request Entity Too Large",
                                                       status_code=413), tenant)
            # idempotency
            idem_key = request.headers.get("idempotency-key")
            cache_key: tuple[str, str] | None = None
            fingerprint = ""
            if idem_key is not None and method in ("PUT", "POST"):
                if len(idem_key) > sim.limits.idempotency_key_max:
                    return _rate_headers(JSONResponse(validation_body(
                        [], f"Idempotency-Key must be at most "
                            f"{sim.limits.idempotency_key_max} characters"),
                        status_code=400), tenant)
                now = sim.clock()
                for k in [k for k, v in sim.idem.items()
                          if now - v.created > sim.limits.idempotency_ttl_s]:
                    del sim.idem[k]
                fingerprint = hashlib.sha256(
                    method.encode() + b" " + str(request.url.path).encode() + b"?"
                    + "&".join(sorted(f"{k}={v}" for k, v in
                                      request.query_params.multi_items())).encode()
                    + b"\n" + raw).hexdigest()
                cache_key = (tenant, idem_key)
                hit = sim.idem.get(cache_key)
                if hit is not None:
                    if hit.fingerprint != fingerprint:
                        return _rate_headers(JSONResponse(validation_body(
                            [], "The Idempotency-Key has already been used with a different "
                                "request (method, URL or body)"), status_code=400), tenant)
                    resp = Response(hit.body, status_code=hit.status, media_type=hit.media_type,
                                    headers={"Idempotent-Replayed": "true"})
                    return _rate_headers(resp, tenant)
            if decision.fail_5xx:
                return _rate_headers(offline(), tenant)
            books = sim.tenant(tenant)
            try:
                resp = await _dispatch(request, books, coll, ident, method, raw, grant.client_id)
            except ApiError as exc:
                resp = exc.response()
            if cache_key is not None:
                # The applied result is what is cached, also when the caller is then
                # answered 5xx below: a retry with the same key within the TTL gets the
                # record the first call wrote, never a second one (see README, "5xx after
                # the write applied").
                body_bytes = bytes(resp.body) if hasattr(resp, "body") else b""
                sim.idem[cache_key] = _Cached(fingerprint, sim.clock(), resp.status_code,
                                              body_bytes, resp.media_type or "application/json")
            if decision.hang_after_apply_s > 0 and method in ("PUT", "POST", "DELETE"):
                await asyncio.sleep(decision.hang_after_apply_s)
            if decision.fail_5xx_after_apply and method in ("PUT", "POST", "DELETE"):
                # Applied and stored, then a 5xx (providers.md section 0). 500 and 503
                # alternate with the record count so both codes are seen.
                return _rate_headers(_after_apply_error(len(sim.idem)), tenant)
            return _rate_headers(resp, tenant)
        finally:
            sim.limiter.release(tenant)

    app.add_api_route("/api.xro/2.0/{path:path}", _handle,
                      methods=["GET", "PUT", "POST", "DELETE"], include_in_schema=False)
    return app
