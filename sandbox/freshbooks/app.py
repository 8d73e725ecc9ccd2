"""FreshBooks API simulator (providers.md section 3), served without the /freshbooks prefix.

Real paths (host replaced by the mount):

- OAuth: ``GET /oauth/authorize`` (HTML consent), ``POST /oauth/authorize/decision``
  (headless: the query parameters + ``decision=approve|deny`` + ``tenant=<accountId>``),
  ``POST /auth/oauth/token`` (JSON or form), ``POST /auth/oauth/revoke``.
- Identity: ``GET /auth/api/v1/users/me``.
- Accounting: ``/accounting/account/{accountId}/users/clients``, ``items/items``,
  ``taxes/taxes``, ``invoices/invoices``, ``payments/payments`` (+ ``/{id}``).
- Ledger: ``/accounting/businesses/{business_uuid}/ledger_accounts/accounts[/{uuid}]``.
- Test hooks: ``/_sandbox/grants``, ``/_sandbox/tokens/{tenant}/expire``,
  ``/_sandbox/books/{tenant}``, ``/_sandbox/seed/{tenant}`` (``{"Region": "US"|"CA"}``
  makes the business one of that region: currency and taxes, books.REGION_TAXES),
  ``/_sandbox/faults/{tenant}``.

Simulator choices (FreshBooks publishes none of these; see also books.py, errors.py):

- Auth failures on accounting/ledger calls (missing, unknown, expired or revoked token):
  HTTP 401 with the accounting envelope, errno 1003 and the message FreshBooks returns
  for unverifiable credentials (fixture ``get_project_response__no_auth.json``). A valid
  token for a grant that does not own the account: 403, errno 1003 AccessDenied.
- Rate limit: a fixed window of ``FreshBooksLimits.window_s`` per account allowing
  ``per_minute`` requests (default 120 [unconf]; FreshBooks' Postman example shows a
  limit of 20 but publishes no figure). Every API reply carries ``X-RateLimit-Limit``,
  ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (epoch seconds); a 429 adds
  ``Retry-After`` (seconds to the window end, capped at 59 as observed) and an
  accounting envelope with errno 429.
- No idempotency: ``Idempotency-Key`` headers are ignored; a replayed POST creates a
  second record (clients, items and invoices have no uniqueness rule).
- 409 errno 409 "The resource being modified is being modified by another request."
  when a write reaches a record (client, item, tax, invoice, payment; a payment locks
  its invoice) that another write is still working on: per-record locks reject
  instead of waiting. Fault latency is spent while holding the lock.
- Faults (``sandbox.faults``), keyed by accountId: ``revoked`` -> 401 (and refresh
  ``invalid_grant``), ``throttle`` -> 429, latency -> ``asyncio.sleep``, ``fail_5xx`` ->
  500 errno 500 FreshAlchemyUnexpected with no effect, ``fail_5xx_after_apply`` -> writes
  are applied and stored, then answered 500 errno 500 (reads are unaffected),
  ``hang_after_apply_s`` -> writes are applied, then the reply waits.
- Search filters: only the documented keys of each list filter (clients:
  freshbooks.com/api/clients; items: freshbooks.com/api/items; ``vis_state``:
  freshbooks.com/api/active_deleted). A key that is not documented is ignored, as
  FreshBooks staff describe for ``search[active]`` (FreshBooksArchives/freshbooks-python-sdk
  issue #42: the list did not change) [2nd]; invoices and payments keep the simulator's
  own filter sets (``invoice_number``, ``customerid``, ``invoiceid``, ...) [assumption].
- Scopes are recorded and echoed but not enforced.
- Paging: ``per_page`` default 15, silently capped at 100; ``page`` below 1 -> 1; past
  the end -> empty list; non-integer per_page/page -> errno 1013/1014 (HTTP 400);
  ``pages`` is 0 when there are no records.
- Lists omit line items unless ``include[]=lines``; single invoice replies include them.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from sandbox.faults import FaultDecision, FaultSwitchboard, fault_router

from .books import REGIONS, Account, Books, valid_account_id
from .errors import SimError, accounting_error, auth_error, ledger_error
from .oauth import TokenStore

__all__ = ["FreshBooksLimits", "create_app"]

T = TypeVar("T")

DEFAULT_CLIENTS = {"blueclerk-local": "local-secret"}
NO_AUTH_MESSAGE = (
    "The server could not verify that you are authorized to access the URL requested. "
    "You either supplied the wrong credentials (e.g. a bad password), or your browser "
    "doesn't understand how to supply the credentials required."
)
UNAUTHENTICATED = "This action requires authentication to continue."
CONFLICT = "The resource being modified is being modified by another request."


@dataclass(frozen=True, slots=True)
class FreshBooksLimits:
    per_minute: int = 120  # requests per account per window [unconf]; Postman shows 20
    window_s: float = 60.0
    retry_after_s: int = 59  # observed Retry-After (F-pm)
    max_per_page: int = 100
    default_per_page: int = 15


class _RateLimiter:
    def __init__(self, limits: FreshBooksLimits) -> None:
        self.limits = limits
        self._windows: dict[str, tuple[float, int]] = {}

    def take(self, tenant: str) -> tuple[bool, dict[str, str]]:
        now = time.time()
        start, count = self._windows.get(tenant, (now, 0))
        if now >= start + self.limits.window_s:
            start, count = now, 0
        reset = start + self.limits.window_s
        allowed = count < self.limits.per_minute
        if allowed:
            count += 1
        self._windows[tenant] = (start, count)
        headers = {
            "X-RateLimit-Limit": str(self.limits.per_minute),
            "X-RateLimit-Remaining": str(max(self.limits.per_minute - count, 0)),
            "X-RateLimit-Reset": str(math.ceil(reset)),
        }
        if not allowed:
            headers["Retry-After"] = str(self.retry_after(reset - now))
        return allowed, headers

    def retry_after(self, seconds_left: float) -> int:
        return max(1, min(self.limits.retry_after_s, math.ceil(seconds_left)))

    def throttled_headers(self, tenant: str) -> dict[str, str]:
        now = time.time()
        start, _ = self._windows.get(tenant, (now, 0))
        reset = start + self.limits.window_s if now < start + self.limits.window_s else now + 60
        return {
            "X-RateLimit-Limit": str(self.limits.per_minute),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(math.ceil(reset)),
            "Retry-After": str(self.limits.retry_after_s),
        }


@dataclass
class _Ctx:
    sim: _Sim
    acct: Account
    decision: FaultDecision
    headers: dict[str, str]

    async def read(self, fn: Callable[[], T]) -> T:
        if self.decision.latency_s:
            await asyncio.sleep(self.decision.latency_s)
        if self.decision.fail_5xx:
            raise _server_error()
        return fn()

    async def write(self, locks: list[tuple[str, int]], fn: Callable[[], T]) -> T:
        keys = [(self.acct.account_id, kind, rid) for kind, rid in locks]
        for kind, rid in locks:
            if (self.acct.account_id, kind, rid) in self.sim.busy:
                raise accounting_error(409, CONFLICT, object_=kind, value=rid)
        self.sim.busy.update(keys)
        try:
            if self.decision.latency_s:
                await asyncio.sleep(self.decision.latency_s)
            if self.decision.fail_5xx:
                raise _server_error()
            result = fn()
        finally:
            self.sim.busy.difference_update(keys)
        if self.decision.fail_5xx_after_apply:
            # The write is applied and stored; only the reply is lost (providers.md s.0).
            raise _server_error()
        if self.decision.hang_after_apply_s:
            await asyncio.sleep(self.decision.hang_after_apply_s)
        return result

    def reply(self, body: Any, status: int = 200) -> JSONResponse:
        return JSONResponse(body, status_code=status, headers=self.headers)


def _server_error() -> SimError:
    return accounting_error(500, "The ORM encountered an unexpected error.", status=500)


class _Sim:
    def __init__(self, board: FaultSwitchboard, limits: FreshBooksLimits,
                 clients: dict[str, str]) -> None:
        self.board = board
        self.limits = limits
        self.books = Books()
        self.tokens = TokenStore(clients)
        self.rate = _RateLimiter(limits)
        self.busy: set[tuple[str, str, int]] = set()

    async def enter(self, request: Request, acct: Account | None, *, ledger: bool = False,
                    tenant_hint: str | None = None) -> _Ctx:
        """Authenticate, then apply revoked/throttle/rate limit for the account."""

        def unauthorized() -> SimError:
            if ledger:
                err = ledger_error(401, [(None, NO_AUTH_MESSAGE)])
                return err
            return accounting_error(1003, NO_AUTH_MESSAGE, status=401)

        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        grant = self.tokens.grant_for_access(token)
        if grant is None:
            raise unauthorized()
        if acct is None:
            if ledger:
                raise ledger_error(404, [(None, "Not found.")])
            raise accounting_error(1003, "You do not have access to perform the action "
                                   "requested.", value=tenant_hint)
        if grant.tenant != acct.account_id:
            if ledger:
                raise ledger_error(403, [(None, "You do not have access to perform the "
                                          "action requested.")])
            raise accounting_error(1003, "You do not have access to perform the action "
                                   "requested.", value=acct.account_id)
        decision = self.board.decide(acct.account_id)
        if decision.revoked:
            raise unauthorized()
        if decision.throttle:
            raise self._too_many(self.rate.throttled_headers(acct.account_id))
        allowed, headers = self.rate.take(acct.account_id)
        if not allowed:
            raise self._too_many(headers)
        request.state.rate_headers = headers
        return _Ctx(self, acct, decision, headers)

    @staticmethod
    def _too_many(headers: dict[str, str]) -> SimError:
        return accounting_error(429, "Too Many Requests.", status=429, headers=headers)

    def account_for(self, account_id: str) -> Account | None:
        return self.books.accounts.get(account_id)


# ---- request helpers -------------------------------------------------------------------

async def _body(request: Request, key: str) -> dict[str, Any]:
    try:
        data = json.loads(await request.body() or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise accounting_error(1005, "The server was unable to parse your request.",
                               status=400) from None
    if not isinstance(data, dict) or not isinstance(data.get(key), dict):
        raise accounting_error(1001, f"Field {key} is required.", field=key, object_=key)
    inner: dict[str, Any] = data[key]
    return inner


def _search(request: Request) -> dict[str, str]:
    """``search[key]=v`` -> {key: v}; ``search[key][]=a&search[key][]=b`` -> {key[]: "a,b"}."""
    out: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        if key.startswith("search[") and key.endswith("][]"):
            name = key[7:-3] + "[]"
            out[name] = f"{out[name]},{value}" if name in out else value
        elif key.startswith("search[") and key.endswith("]"):
            out[key[7:-1]] = value
    return out


# Documented search keys (freshbooks.com/api/clients "Searches / Filters"); anything else is
# ignored. ``vis_state`` from freshbooks.com/api/active_deleted; ``userids[]`` from the
# SDK's own test (tests/test_accounting_resource.py, test_list_clients__filtered).
CLIENT_LIKE = {"organization_like": ("organization",), "fname_like": ("fname",),
               "lname_like": ("lname",), "note_like": ("note",),
               "address_like": ("p_street", "p_street2", "p_city", "p_province", "p_code",
                                "p_country"),
               "phone_like": ("home_phone", "bus_phone", "mob_phone", "fax")}


def _like(record: dict[str, Any], fields: tuple[str, ...], needle: str) -> bool:
    """A Like search: the value contains the parameter (freshbooks.com/api/parameters);
    case-insensitive [assumption]."""
    return any(needle.lower() in str(record.get(f) or "").lower() for f in fields)


def _filter_clients(rows: list[dict[str, Any]], s: dict[str, str]) -> list[dict[str, Any]]:
    if "email" in s:  # Equals: exact email (case-insensitive [assumption])
        rows = [r for r in rows if _eq(r["email"], s["email"])]
    for key, fields in CLIENT_LIKE.items():
        if key in s:
            rows = [r for r in rows if _like(r, fields, s[key])]
    if "userids[]" in s:
        wanted = set(s["userids[]"].split(","))
        rows = [r for r in rows if str(r["id"]) in wanted]
    return _day_filter(rows, s)


def _filter_items(rows: list[dict[str, Any]], s: dict[str, str]) -> list[dict[str, Any]]:
    """freshbooks.com/api/items: itemid, sku (Equals), itemids (In), description (Like),
    updated_min/max; there is no ``name`` filter."""
    if "sku" in s:
        rows = [r for r in rows if str(r.get("sku") or "") == s["sku"]]
    if "itemid" in s:
        rows = [r for r in rows if str(r["id"]) == s["itemid"]]
    if "itemids[]" in s:
        wanted = set(s["itemids[]"].split(","))
        rows = [r for r in rows if str(r["id"]) in wanted]
    if "description" in s:
        rows = [r for r in rows if _like(r, ("description",), s["description"])]
    return _day_filter(rows, s)


def _includes(request: Request) -> set[str]:
    return set(request.query_params.getlist("include[]"))


def _day_filter(records: list[dict[str, Any]], search: dict[str, str],
                stamp_field: str = "updated") -> list[dict[str, Any]]:
    for key in ("updated_min", "updated_max"):
        if key in search:
            value = search[key]
            if len(value) != 10 or value[4] != "-" or value[7] != "-":
                raise accounting_error(1004, f"Invalid value for {key}; expected YYYY-MM-DD.",
                                       field=key, value=value, status=400)
    if "updated_min" in search:
        records = [r for r in records if str(r[stamp_field])[:10] >= search["updated_min"]]
    if "updated_max" in search:
        records = [r for r in records if str(r[stamp_field])[:10] < search["updated_max"]]
    return records


def _visible(records: list[dict[str, Any]], search: dict[str, str]) -> list[dict[str, Any]]:
    if "vis_state" in search:
        try:
            vis = int(search["vis_state"])
        except ValueError:
            raise accounting_error(1004, "Invalid value for vis_state.", field="vis_state",
                                   value=search["vis_state"], status=400) from None
        return [r for r in records if r.get("vis_state") == vis]
    return [r for r in records if r.get("vis_state") != 1]


def _page(request: Request, limits: FreshBooksLimits, plural: str,
          records: list[Any]) -> dict[str, Any]:
    params = request.query_params
    try:
        per_page = int(params.get("per_page", limits.default_per_page))
    except ValueError:
        raise accounting_error(1013, "The 'per_page' argument in the request was not a "
                               "positive integer.", field="per_page",
                               value=params.get("per_page")) from None
    try:
        page = int(params.get("page", 1))
    except ValueError:
        raise accounting_error(1014, "The 'page' argument in the request was not a "
                               "positive integer.", field="page",
                               value=params.get("page")) from None
    if per_page < 1:
        raise accounting_error(1013, "The 'per_page' argument in the request was not a "
                               "positive integer.", field="per_page", value=per_page)
    per_page = min(per_page, limits.max_per_page)
    page = max(page, 1)
    total = len(records)
    chunk = records[(page - 1) * per_page: page * per_page]
    return {"response": {"result": {plural: chunk, "page": page,
                                    "pages": math.ceil(total / per_page),
                                    "per_page": per_page, "total": total}}}


def _one(singular: str, record: dict[str, Any]) -> dict[str, Any]:
    return {"response": {"result": {singular: record}}}


def _filter_taxes(rows: list[dict[str, Any]], s: dict[str, str]) -> list[dict[str, Any]]:
    """freshbooks.com/api/taxes "Filters": taxid (Equals), taxids (In), name and number
    (Like), compound (Bool), updated_min/max (Between)."""
    if "taxid" in s:
        rows = [r for r in rows if str(r["id"]) == s["taxid"]]
    if "taxids[]" in s:
        wanted = set(s["taxids[]"].split(","))
        rows = [r for r in rows if str(r["id"]) in wanted]
    for key in ("name", "number"):
        if key in s:
            rows = [r for r in rows if _like(r, (key,), s[key])]
    if "compound" in s:
        wanted_compound = s["compound"].strip().lower() in ("true", "1")
        rows = [r for r in rows if bool(r["compound"]) == wanted_compound]
    return _day_filter(rows, s)


def _eq(a: Any, b: str) -> bool:
    return str(a).strip().lower() == b.strip().lower()


# ---- app ---------------------------------------------------------------------------

def create_app(
    board: FaultSwitchboard | None = None,
    limits: FreshBooksLimits | None = None,
    clients: dict[str, str] | None = None,
) -> FastAPI:
    board = board if board is not None else FaultSwitchboard()
    sim = _Sim(board, limits or FreshBooksLimits(), dict(clients or DEFAULT_CLIENTS))
    books = sim.books
    app = FastAPI(title="FreshBooks simulator", docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.sim = sim
    app.include_router(fault_router(board))

    @app.exception_handler(SimError)
    async def _sim_error(request: Request, exc: SimError) -> JSONResponse:
        headers = dict(getattr(request.state, "rate_headers", {}) or {})
        headers.update(exc.headers)
        return JSONResponse(exc.body, status_code=exc.status, headers=headers)

    # ---- OAuth ------------------------------------------------------------------------
    @app.get("/oauth/authorize")
    async def authorize(request: Request) -> Response:
        q = request.query_params
        if q.get("response_type") != "code" or not sim.tokens.known_client(q.get("client_id")) \
                or not q.get("redirect_uri"):
            return HTMLResponse("<h1>Invalid authorization request</h1>", status_code=400)
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in q.multi_items()
        )
        page = f"""<!doctype html><html><head><title>FreshBooks (simulated)</title></head>
<body><h1>Connect to FreshBooks</h1>
<p>Application <b>{html.escape(q.get("client_id", ""))}</b> asks for:
<code>{html.escape(q.get("scope") or "default scopes")}</code></p>
<form method="post" action="authorize/decision">{hidden}
<label>Account id <input name="tenant" pattern="[A-Za-z0-9]+" required></label>
<button name="decision" value="approve">Allow</button>
<button name="decision" value="deny" formnovalidate>Deny</button>
</form></body></html>"""
        return HTMLResponse(page)

    @app.post("/oauth/authorize/decision")
    async def decision(request: Request) -> Response:
        form = await request.form()
        f = {k: str(v) for k, v in form.items()}
        client_id, redirect_uri = f.get("client_id", ""), f.get("redirect_uri", "")
        if f.get("response_type", "code") != "code" or not sim.tokens.known_client(client_id) \
                or not redirect_uri:
            return JSONResponse({"error": "invalid_request",
                                 "error_description": "Unknown client or missing "
                                 "redirect_uri."}, status_code=400)
        params: dict[str, str] = {}
        if f.get("decision") == "approve":
            tenant = f.get("tenant", "")
            if not valid_account_id(tenant):
                return JSONResponse({"error": "invalid_request",
                                     "error_description": "tenant must be an alphanumeric "
                                     "account id."}, status_code=400)
            books.account(tenant)
            params["code"] = sim.tokens.issue_code(client_id, redirect_uri, tenant,
                                                   f.get("scope") or "")
        else:
            params["error"] = "access_denied"
            params["error_description"] = ("The resource owner or authorization server "
                                           "denied the request.")
        if "state" in f:
            params["state"] = f["state"]
        sep = "&" if "?" in redirect_uri else "?"
        return RedirectResponse(f"{redirect_uri}{sep}{urlencode(params)}", status_code=302)

    async def _params(request: Request) -> dict[str, str]:
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                data = json.loads(await request.body() or b"{}")
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise auth_error(400, "invalid_request", "Malformed JSON body.") from None
            if not isinstance(data, dict):
                raise auth_error(400, "invalid_request", "Malformed JSON body.")
            return {k: str(v) for k, v in data.items() if v is not None}
        form = await request.form()
        return {k: str(v) for k, v in form.items()}

    @app.post("/auth/oauth/token")
    async def token(request: Request) -> JSONResponse:
        p = await _params(request)
        sim.tokens.check_client(p.get("client_id"), p.get("client_secret"))
        client_id = p["client_id"]
        grant_type = p.get("grant_type")
        if grant_type == "authorization_code":
            body = sim.tokens.exchange_code(client_id, p.get("code"), p.get("redirect_uri"))
        elif grant_type == "refresh_token":
            grant = sim.tokens.grant_for_refresh(client_id, p.get("refresh_token"))
            if board.plan(grant.tenant).revoked:
                raise auth_error(400, "invalid_grant",
                                 "The provided authorization grant is invalid, expired, "
                                 "revoked, does not match the redirection URI used in the "
                                 "authorization request, or was issued to another client.")
            body = sim.tokens.refresh(grant, p["refresh_token"])
        else:
            raise auth_error(400, "unsupported_grant_type",
                             "The authorization grant type is not supported by the "
                             "authorization server.")
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    @app.post("/auth/oauth/revoke")
    async def revoke(request: Request) -> JSONResponse:
        p = await _params(request)
        if not p.get("client_id") or sim.tokens.clients.get(p["client_id"]) != p.get(
            "client_secret"
        ):
            raise auth_error(403, "unauthorized_client",
                             "You are not authorized to revoke this token")
        sim.tokens.revoke(p["client_id"], p.get("token"))
        return JSONResponse({})

    @app.get("/auth/api/v1/users/me")
    async def me(request: Request) -> JSONResponse:
        auth = request.headers.get("authorization", "")
        token_value = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        grant = sim.tokens.grant_for_access(token_value)
        if grant is None or board.plan(grant.tenant).revoked:
            raise auth_error(401, "unauthenticated", UNAUTHENTICATED)
        acct = books.account(grant.tenant)
        ctx = await sim.enter(request, acct)
        return ctx.reply(await ctx.read(lambda: {"response": _identity(acct)}))

    # ---- sandbox hooks ----------------------------------------------------------------
    @app.post("/_sandbox/grants")
    async def sandbox_grant(request: Request) -> JSONResponse:
        data = json.loads(await request.body() or b"{}")
        tenant = str(data.get("tenant", ""))
        if not valid_account_id(tenant):
            return JSONResponse({"detail": "tenant must be an alphanumeric account id"},
                                status_code=422)
        client_id = str(data.get("client_id") or next(iter(sim.tokens.clients)))
        if not sim.tokens.known_client(client_id):
            return JSONResponse({"detail": f"unknown client_id {client_id!r}"},
                                status_code=422)
        books.account(tenant)
        return JSONResponse(sim.tokens.new_grant(client_id, tenant, data.get("scope")))

    @app.post("/_sandbox/tokens/{tenant}/expire")
    async def sandbox_expire(tenant: str) -> dict[str, int]:
        return {"expired": sim.tokens.expire_tenant(tenant)}

    @app.get("/_sandbox/books/{tenant}")
    async def sandbox_books(tenant: str) -> JSONResponse:
        acct = books.accounts.get(tenant)
        if acct is None:
            return JSONResponse({"detail": "unknown tenant"}, status_code=404)
        return JSONResponse(books.dump(acct))

    @app.post("/_sandbox/seed/{tenant}")
    async def sandbox_seed(tenant: str, request: Request) -> JSONResponse:
        if not valid_account_id(tenant):
            return JSONResponse({"detail": "tenant must be alphanumeric"}, status_code=422)
        data = json.loads(await request.body() or b"{}")
        region = str(data.get("Region") or "US").upper()
        if region not in REGIONS:
            return JSONResponse({"detail": f"Region must be one of {', '.join(REGIONS)}"},
                                status_code=422)
        acct = books.account(tenant)
        if "Region" not in data:
            region = acct.region
        if data.get("name"):
            acct.name = str(data["name"])
        if "Region" in data or data.get("currency_code"):
            books.set_region(acct, region, data.get("currency_code") or (
                acct.currency_code if "Region" not in data else None))
        created: dict[str, list[Any]] = {"clients": [], "taxes": [], "items": [],
                                         "ledger_accounts": []}
        try:
            for c in data.get("clients", []):
                created["clients"].append(
                    books.create_client(acct, c, updated=c.get("updated"))["id"])
            for t in data.get("taxes", []):
                created["taxes"].append(books.create_tax(acct, t, updated=t.get("updated"))["id"])
            for i in data.get("items", []):
                created["items"].append(books.create_item(acct, i, updated=i.get("updated"))["id"])
            for la in data.get("ledger_accounts", []):
                created["ledger_accounts"].append(
                    books.create_ledger(acct, la, need_parent=False)["uuid"])
        except SimError as exc:
            return JSONResponse({"detail": exc.body, "created": created}, status_code=422)
        return JSONResponse({"account": books.dump(acct)["account"], **created})

    # ---- accounting resources ------------------------------------------------------
    async def ctx_for(request: Request, account_id: str) -> _Ctx:
        return await sim.enter(request, sim.account_for(account_id), tenant_hint=account_id)

    base = "/accounting/account/{account_id}"

    # clients
    @app.get(base + "/users/clients")
    async def list_clients(account_id: str, request: Request) -> JSONResponse:
        ctx = await ctx_for(request, account_id)
        s = _search(request)

        def run() -> dict[str, Any]:
            rows = _filter_clients(_visible(list(ctx.acct.clients.values()), s), s)
            return _page(request, sim.limits, "clients", rows)

        return ctx.reply(await ctx.read(run))

    @app.post(base + "/users/clients")
    async def create_client(account_id: str, request: Request) -> JSONResponse:
        ctx = await ctx_for(request, account_id)
        body = await _body(request, "client")
        client = await ctx.write([], lambda: books.create_client(ctx.acct, body))
        return ctx.reply(_one("client", client))

    @app.get(base + "/users/clients/{cid}")
    async def get_client(account_id: str, cid: int, request: Request) -> JSONResponse:
        ctx = await ctx_for(request, account_id)
        return ctx.reply(_one("client", await ctx.read(lambda: books.get_client(ctx.acct, cid))))

    @app.put(base + "/users/clients/{cid}")
    async def update_client(account_id: str, cid: int, request: Request) -> JSONResponse:
        ctx = await ctx_for(request, account_id)
        body = await _body(request, "client")
        client = await ctx.write([("client", cid)],
                                 lambda: books.update_client(ctx.acct, cid, body))
        return ctx.reply(_one("client", client))

    # items
    @app.get(base + "/items/items")
    async def list_items(account_id: str, request: Request) -> JSONResponse:
        ctx = await ctx_for(request, account_id)
        s = _search(request)

        def run() -> dict[str, Any]:
            rows = _filter_items(_visible(list(ctx.acct.items.values()), s), s)
            return _page(request, sim.limits, "items", rows)

        return ctx.reply(await ctx.read(run))

    @app.post(base + "/items/items")
    async def create_item(account_id: str, request: Request) -> JSONResponse:
        ctx = await ctx_for(request, account_id)
        body = await _body(request, "item")
        item = await ctx.write([], lambda: books.create_item(ctx.acct, body))
        return ctx.reply(_one("item", item))

    @app.get(base + "/items/items/{iid}")
    async def get_item(account_id: str, iid: int, request: Request) -> JSONResponse:
        ctx = await ctx_for(request, account_id)
        return ctx.reply(_one("item", await ctx.read(lambda: books.get_item(ctx.acct, iid))))

    @app.put(base + "/items/items/{iid}")
    async def update_item(account_id: str, iid: int, request: Request) -> JSONResponse:
        ctx = await ctx_for(request, account_id)
        body = await _body(request, "item")
        item = await ctx.write([("item", iid)], lambda: books.update_item(ctx.acct, iid, body))
        return ctx.reply(_one("item", item))

    # taxes
    @app.get(base + "/taxes/taxes")
    async def list_taxes(account_id: str, request: Request) -> JSONResponse:
        ctx = await ctx_for(request, account_id)
        s = _search(request)

        def run() -> dict[str, Any]:
            return _page(request, sim.limits, "taxes",
                         _filter_taxes(list(ctx.acct.taxes.values()), s))

        return ctx.reply(await ctx.read(run))

    @app.post(base + "/taxes/taxes")
    async def create_tax(account_id: str, request: Request) -> JSONResponse:
        ctx = await ctx_for(request, account_id)
        body = await _body(request, "tax")
        tax = await ctx.write([], lambda: books.create_tax(ctx.acct, body))
        return ctx.reply(_one("tax", tax))

    @app.get(base + "/taxes/taxes/{tid}")
    async def get_tax(account_id: str, tid: int, request: Request) -> JSONResponse:
        ctx = await ctx_for(request, account_id)
        return ctx.reply(_one("tax", await ctx.read(lambda: books.get_tax(ctx.acct, tid))))

    @app.put(base + "/taxes/taxes/{tid}")
    async def update_tax(account_id: str, tid: int, request: Request) -> JSONResponse:
        ctx = await ctx_for(request, account_id)
        body = await _body(request, "tax")
        tax = await ctx.write([("tax", tid)], lambda: books.update_tax(ctx.acct, tid, body))
        return ctx.reply(_one("tax", tax))

    @app.delete(base + "/taxes/taxes/{tid}")
    async def delete_tax(account_id: str, tid: int, request: Request) -> JSONResponse:
        ctx = await ctx_for(request, account_id)
        await ctx.write([("tax", tid)], lambda: books.delete_tax(ctx.acct, tid))
        return ctx.reply({"response": {}})

    # invoices
    @app.get(base + "/invoices/invoices")
    async def list_invoices(account_id: str, request: Request) -> JSONResponse:
        ctx = await ctx_for(request, account_id)
        s = _search(request)
        with_lines = "lines" in _includes(request)

        def run() -> dict[str, Any]:
            rows = _visible(list(ctx.acct.invoices.values()), s)
            if "invoice_number" in s:
                rows = [r for r in rows if str(r["invoice_number"]) == s["invoice_number"]]
            for key in ("customerid", "invoiceid", "id"):
                if key in s:
                    rows = [r for r in rows if str(r[key]) == s[key]]
            rows = _day_filter(rows, s)
            rendered = [books.render_invoice(ctx.acct, r, with_lines) for r in rows]
            if "v3_status" in s:
                rendered = [r for r in rendered if r["v3_status"] == s["v3_status"]]
            return _page(request, sim.limits, "invoices", rendered)

        return ctx.reply(await ctx.read(run))

    @app.post(base + "/invoices/invoices")
    async def create_invoice(account_id: str, request: Request) -> JSONResponse:
        ctx = await ctx_for(request, account_id)
        body = await _body(request, "invoice")
        invoice = await ctx.write([], lambda: books.render_invoice(
            ctx.acct, books.create_invoice(ctx.acct, body), True))
        return ctx.reply(_one("invoice", invoice))

    @app.get(base + "/invoices/invoices/{iid}")
    async def get_invoice(account_id: str, iid: int, request: Request) -> JSONResponse:
        ctx = await ctx_for(request, account_id)
        invoice = await ctx.read(lambda: books.render_invoice(
            ctx.acct, books.get_invoice(ctx.acct, iid), True))
        return ctx.reply(_one("invoice", invoice))

    @app.put(base + "/invoices/invoices/{iid}")
    async def update_invoice(account_id: str, iid: int, request: Request) -> JSONResponse:
        ctx = await ctx_for(request, account_id)
        body = await _body(request, "invoice")
        invoice = await ctx.write([("invoice", iid)], lambda: books.render_invoice(
            ctx.acct, books.update_invoice(ctx.acct, iid, body), True))
        return ctx.reply(_one("invoice", invoice))

    @app.delete(base + "/invoices/invoices/{iid}")
    async def delete_invoice(account_id: str, iid: int, request: Request) -> JSONResponse:
        ctx = await ctx_for(request, account_id)
        invoice = await ctx.write([("invoice", iid)], lambda: books.render_invoice(
            ctx.acct, books.delete_invoice(ctx.acct, iid), True))
        return ctx.reply(_one("invoice", invoice))

    # payments
    @app.get(base + "/payments/payments")
    async def list_payments(account_id: str, request: Request) -> JSONResponse:
        ctx = await ctx_for(request, account_id)
        s = _search(request)

        def run() -> dict[str, Any]:
            rows = _visible(list(ctx.acct.payments.values()), s)
            for key in ("invoiceid", "clientid"):
                if key in s:
                    rows = [r for r in rows if str(r[key]) == s[key]]
            rows = _day_filter(rows, s)
            return _page(request, sim.limits, "payments",
                         [books.render_payment(r) for r in rows])

        return ctx.reply(await ctx.read(run))

    @app.post(base + "/payments/payments")
    async def create_payment(account_id: str, request: Request) -> JSONResponse:
        ctx = await ctx_for(request, account_id)
        body = await _body(request, "payment")
        locks: list[tuple[str, int]] = []
        with contextlib.suppress(ValueError):
            locks.append(("invoice", int(str(body.get("invoiceid")))))
        payment = await ctx.write(locks, lambda: books.render_payment(
            books.create_payment(ctx.acct, body)))
        return ctx.reply(_one("payment", payment))

    @app.get(base + "/payments/payments/{pid}")
    async def get_payment(account_id: str, pid: int, request: Request) -> JSONResponse:
        ctx = await ctx_for(request, account_id)
        payment = await ctx.read(lambda: books.render_payment(books.get_payment(ctx.acct, pid)))
        return ctx.reply(_one("payment", payment))

    @app.put(base + "/payments/payments/{pid}")
    async def update_payment(account_id: str, pid: int, request: Request) -> JSONResponse:
        ctx = await ctx_for(request, account_id)
        body = await _body(request, "payment")
        existing = ctx.acct.payments.get(pid)
        locks = [("payment", pid)] + ([("invoice", existing["invoiceid"])] if existing else [])
        payment = await ctx.write(locks, lambda: books.render_payment(
            books.update_payment(ctx.acct, pid, body)))
        return ctx.reply(_one("payment", payment))

    # ---- ledger accounts -------------------------------------------------------------
    lbase = "/accounting/businesses/{business_uuid}/ledger_accounts/accounts"

    async def lctx(request: Request, business_uuid: str) -> _Ctx:
        return await sim.enter(request, books.by_business_uuid(business_uuid), ledger=True)

    @app.get(lbase)
    async def list_ledger(business_uuid: str, request: Request) -> JSONResponse:
        ctx = await lctx(request, business_uuid)
        return ctx.reply(await ctx.read(lambda: {"data": list(ctx.acct.ledger.values())}))

    @app.get(lbase + "/{ledger_uuid}")
    async def get_ledger(business_uuid: str, ledger_uuid: str, request: Request) -> JSONResponse:
        ctx = await lctx(request, business_uuid)
        return ctx.reply({"data": await ctx.read(lambda: books.get_ledger(ctx.acct, ledger_uuid))})

    @app.post(lbase)
    async def create_ledger(business_uuid: str, request: Request) -> JSONResponse:
        ctx = await lctx(request, business_uuid)
        try:
            data = json.loads(await request.body() or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ledger_error(400, [(None, "Malformed JSON.")]) from None
        body = data.get("data", data) if isinstance(data, dict) else {}
        if not isinstance(body, dict):
            raise ledger_error(400, [(None, "Malformed JSON.")])
        entry = await ctx.write([], lambda: books.create_ledger(ctx.acct, body))
        return ctx.reply({"data": entry})

    return app


def _identity(acct: Account) -> dict[str, Any]:
    """The /users/me body for the account owner (shape of auth_me_response.json)."""
    first, last = "Owner", acct.account_id
    email = f"owner+{acct.account_id.lower()}@example.com"
    business = {
        "id": acct.business_id,
        "business_uuid": acct.business_uuid,
        "name": acct.name,
        "account_id": acct.account_id,
        "date_format": "mm/dd/yyyy",
        "address": {"id": acct.business_id + 1, "street": "", "city": "", "province": "",
                    "country": "", "postal_code": ""},
        "phone_number": None,
        "business_clients": [],
    }
    return {
        "id": acct.identity_id,
        "identity_id": acct.identity_id,
        "identity_uuid": acct.business_uuid,
        "profile": {"setup_complete": True, "first_name": first, "last_name": last,
                    "phone_number": None, "address": None, "professions": [],
                    "has_password": True},
        "first_name": first,
        "last_name": last,
        "email": email,
        "language": "en",
        "confirmed_at": "2020-01-01T00:00:00Z",
        "created_at": "2020-01-01T00:00:00Z",
        "unconfirmed_email": None,
        "setup_complete": True,
        "phone_numbers": [],
        "addresses": [],
        "profession": None,
        "links": {"me": f"/service/auth/api/v1/users?id={acct.identity_id}",
                  "roles": f"/service/auth/api/v1/users/role/{acct.identity_id}"},
        "permissions": {acct.account_id: {}},
        "groups": [{"id": acct.identity_id, "group_id": acct.business_id, "role": "owner",
                    "identity_id": acct.identity_id, "identity_uuid": acct.business_uuid,
                    "business_id": acct.business_id, "active": True}],
        "subscription_statuses": {acct.account_id: "active"},
        "integrations": {},
        "business_memberships": [{"id": acct.business_id + 2, "role": "owner",
                                  "unacknowledged_change": False, "business": business}],
        "identity_origin": None,
        "roles": [{"id": acct.identity_id + 3, "role": "admin", "systemid": acct.identity_id,
                   "userid": 1, "created_at": "2020-01-01T00:00:00Z",
                   "links": {"destroy": f"/service/auth/api/v1/users/role/{acct.identity_id}"},
                   "accountid": acct.account_id}],
    }
