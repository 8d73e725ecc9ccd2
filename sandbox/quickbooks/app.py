"""QuickBooks Online simulator (paths as if mounted at ``/quickbooks``).

Faithful to section 1 of ``shared/providers.md``; see ``books.py`` for the record rules and
money arithmetic, ``query.py`` for the query language, ``oauth.py`` for tokens.

Request pipeline for ``/v3/company/{realmId}/...`` (in this order):
1. ``Authorization: Bearer`` must name a live access token (else 401 AuthenticationFault 3200);
   the token's company must be the path's realm (else 403 AuthorizatonFault); a ``revoked``
   fault switch on the realm also answers 401.
2. Rate limits per realm (``QuickBooksLimits``): requests per minute, concurrent requests in
   flight, batch calls per minute -> 429, Fault type ``SERVICE`` code 3001, ``Retry-After``.
   Refused requests do not count against the window.
3. Fault switchboard decision: latency, a throttle burst (429), a 5xx before any effect.
   (A ``fail_5xx_after_apply`` decision is acted on in step 6.)
4. ``minorversion`` (>= 75 if given) and ``requestid`` (<= 50 chars, <= 36 for batch) checks.
5. ``requestid`` replay: a POST whose requestid was already answered in this realm gets the
   stored status and body (including the original ``time``) without re-executing. Every
   answer produced by execution is stored, validation faults included; 401/403/429/5xx
   answers are not, so a retry after them executes. Retention: ``requestid_retention_s``
   (default 24 h). Intuit documents no window (blogs.intuit.com/2015/04/06/15346 says only
   that a repeat returns the original response); QuickBooks-V3-DotNET-SDK issue #352 reports
   duplicates despite a RequestId, so the window is finite and an ASSUMPTION. A retry after
   the window executes again and can duplicate.
6. Execute; for writes, a ``hang_after_apply_s`` fault sleeps after applying and storing, and
   a ``fail_5xx_after_apply`` fault answers 500 with a SystemFault body after applying and
   storing the real answer, so a replay with the same requestid returns the stored original
   (providers.md section 0: "A 5xx can come after the write was applied").
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import html
import json
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from sandbox.faults import FaultSwitchboard, fault_router
from sandbox.quickbooks import errors
from sandbox.quickbooks.books import ENTITY_BY_PATH, Books, plain, response_time
from sandbox.quickbooks.errors import QBOFault
from sandbox.quickbooks.oauth import OAuthError, OAuthStore
from sandbox.quickbooks.query import COMPANY_TZ, ENTITIES, QueryError

__all__ = ["DEFAULT_CLIENTS", "QuickBooksLimits", "QuickBooksSim", "create_app"]

DEFAULT_CLIENTS = {"blueclerk-local": "local-secret"}
ACCOUNTING_SCOPE = "com.intuit.quickbooks.accounting"


@dataclass(frozen=True, slots=True)
class QuickBooksLimits:
    """Documented QuickBooks limits (providers.md 1.5); tests may lower or raise them."""

    requests_per_minute: int = 500  # per realm
    max_concurrent: int = 10  # requests in flight per realm
    batch_per_minute: int = 40  # batch calls per realm
    max_batch_items: int = 30  # operations in one batch
    retry_after_s: int = 60  # Retry-After on 429 ("wait 60 s")
    # The limits page also says "10 requests per second"; off unless set, so ordinary
    # sequential test traffic is not throttled.
    requests_per_second: int | None = None
    max_requestid_len: int = 50
    max_batch_requestid_len: int = 36
    max_bid_len: int = 10
    min_minor_version: int = 75
    cdc_lookback_days: int = 30
    # How long a requestid's answer is kept for replay. Undocumented (ASSUMPTION, see the
    # module docstring); QuickBooks-V3-DotNET-SDK #352 shows it is not forever.
    requestid_retention_s: float = 24 * 3600.0


@dataclass
class _Usage:
    minute: deque[float] = field(default_factory=deque)
    second: deque[float] = field(default_factory=deque)
    batch_minute: deque[float] = field(default_factory=deque)
    in_flight: int = 0


@dataclass
class _Stored:
    status: int
    body: bytes
    at: float = 0.0  # clock() when stored


class QuickBooksSim:
    """All simulator state; reachable as ``app.state.qbo`` for in-process tests."""

    def __init__(
        self,
        board: FaultSwitchboard,
        limits: QuickBooksLimits,
        clients: dict[str, str],
        clock: Callable[[], float],
    ) -> None:
        self.board = board
        self.limits = limits
        self.clock = clock
        self.oauth = OAuthStore(clients, clock)
        self.books = Books(clock)
        self.usage: dict[str, _Usage] = {}
        self.replies: dict[tuple[str, str], _Stored] = {}

    def now_str(self) -> str:
        return response_time(self.clock())

    def fault_response(self, fault: QBOFault) -> Response:
        return _json(fault.status, fault.body(self.now_str()), fault.headers)

    def admit(self, realm_id: str, is_batch: bool) -> _Usage:
        """Count one request against the realm's windows, or raise the 429 fault."""
        usage = self.usage.setdefault(realm_id, _Usage())
        now = self.clock()
        for window, span in ((usage.minute, 60.0), (usage.batch_minute, 60.0),
                             (usage.second, 1.0)):
            while window and window[0] <= now - span:
                window.popleft()
        lim = self.limits
        if (
            usage.in_flight >= lim.max_concurrent
            or len(usage.minute) >= lim.requests_per_minute
            or (lim.requests_per_second is not None
                and len(usage.second) >= lim.requests_per_second)
            or (is_batch and len(usage.batch_minute) >= lim.batch_per_minute)
        ):
            raise errors.throttle_fault(lim.retry_after_s)
        usage.minute.append(now)
        usage.second.append(now)
        if is_batch:
            usage.batch_minute.append(now)
        return usage


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(
        content=json.dumps(plain(body), ensure_ascii=False).encode(),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def _basic_client(request: Request) -> tuple[str | None, str | None]:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        return None, None
    try:
        raw = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    client_id, sep, secret = raw.partition(":")
    return (client_id, secret) if sep else (None, None)


def _with_params(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def _query_fault(exc: QueryError) -> QBOFault:
    message = "Error parsing query" if exc.code == "4000" else "Invalid query"
    prefix = "QueryParserError" if exc.code == "4000" else ""
    detail = f"{prefix}: {exc.detail}" if prefix else exc.detail
    return errors.validation(exc.code, message, detail)


def _parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"null", parse_float=Decimal)
    except (ValueError, UnicodeDecodeError):
        raise errors.validation(
            "2010", "Request has invalid or unsupported property",
            "Could not parse the request body as JSON",
        ) from None


def create_app(
    board: FaultSwitchboard | None = None,
    limits: QuickBooksLimits | None = None,
    clients: dict[str, str] | None = None,
    *,
    clock: Callable[[], float] | None = None,
) -> FastAPI:
    """Build the simulator. ``clock`` (epoch seconds) drives token expiry, rate windows and
    record timestamps; tests pass a fake one to jump an hour ahead."""
    board = board or FaultSwitchboard()
    sim = QuickBooksSim(
        board, limits or QuickBooksLimits(), dict(clients or DEFAULT_CLIENTS),
        clock or time.time,
    )
    app = FastAPI(title="QuickBooks Online simulator", docs_url=None, redoc_url=None)
    app.state.qbo = sim
    app.include_router(fault_router(board))

    # ------------------------------------------------------------------ OAuth

    @app.get("/connect/oauth2", response_class=HTMLResponse)
    async def authorize(request: Request) -> Response:
        p = request.query_params
        client_id = p.get("client_id", "")
        if client_id not in sim.oauth.clients:
            return HTMLResponse("<h1>invalid_client</h1>", status_code=400)
        if not p.get("redirect_uri"):
            return HTMLResponse("<h1>redirect_uri is required</h1>", status_code=400)
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(p.get(k, ""))}">'
            for k in ("client_id", "response_type", "scope", "redirect_uri", "state")
        )
        suggested = "9341" + "".join(secrets.choice("0123456789") for _ in range(12))
        page = f"""<!doctype html><html><head><title>Connect to QuickBooks (simulator)</title>
</head><body><h1>Connect {html.escape(client_id)} to QuickBooks</h1>
<p>Scopes: {html.escape(p.get("scope", ""))}</p>
<form method="post" action="oauth2/decision">{hidden}
<label>Company (realmId) <input name="tenant" value="{suggested}"></label>
<button name="decision" value="approve">Connect</button>
<button name="decision" value="deny">Cancel</button></form></body></html>"""
        return HTMLResponse(page)

    @app.post("/connect/oauth2/decision")
    async def decision(request: Request) -> Response:
        form = await request.form()
        f = {k: str(v) for k, v in form.items()}
        client_id = f.get("client_id", "")
        redirect_uri = f.get("redirect_uri", "")
        if client_id not in sim.oauth.clients:
            return HTMLResponse("<h1>invalid_client</h1>", status_code=400)
        if not redirect_uri:
            return HTMLResponse("<h1>redirect_uri is required</h1>", status_code=400)
        state = f.get("state", "")

        def back(params: dict[str, str]) -> Response:
            if state:
                params["state"] = state
            return RedirectResponse(_with_params(redirect_uri, params), status_code=302)

        if f.get("decision") != "approve":
            return back({"error": "access_denied"})
        if f.get("response_type") != "code":
            return back({"error": "unsupported_response_type"})
        scope = f.get("scope", "")
        if ACCOUNTING_SCOPE not in scope.split():
            return back({"error": "invalid_scope"})
        realm_id = f.get("tenant", "").strip()
        if not realm_id:
            return HTMLResponse("<h1>tenant (realmId) is required</h1>", status_code=400)
        sim.books.realm(realm_id)
        code = sim.oauth.issue_code(client_id, redirect_uri, realm_id, scope)
        return back({"code": code, "realmId": realm_id})

    @app.post("/oauth2/v1/tokens/bearer")
    async def token(request: Request) -> Response:
        client_id, secret = _basic_client(request)
        if not sim.oauth.client_ok(client_id, secret) or client_id is None:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        form = {k: str(v) for k, v in (await request.form()).items()}
        grant_type = form.get("grant_type")
        try:
            if grant_type == "authorization_code":
                body = sim.oauth.exchange_code(
                    client_id, form.get("code", ""), form.get("redirect_uri", "")
                )
            elif grant_type == "refresh_token":
                refresh = form.get("refresh_token", "")
                realm_id = sim.oauth.realm_of_refresh(refresh)
                revoked = realm_id is not None and board.plan(realm_id).revoked
                body = sim.oauth.refresh(client_id, refresh, revoked)
            else:
                return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        except OAuthError as exc:
            return JSONResponse({"error": exc.error}, status_code=exc.status)
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    @app.post("/v2/oauth2/tokens/revoke")
    async def revoke(request: Request) -> Response:
        client_id, secret = _basic_client(request)
        if not sim.oauth.client_ok(client_id, secret):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        try:
            payload = json.loads(await request.body() or b"{}")
        except ValueError:
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        tok = payload.get("token") if isinstance(payload, dict) else None
        if not isinstance(tok, str) or not tok:
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        sim.oauth.revoke(tok)  # unknown tokens are answered 200 too (RFC 7009)
        return Response(status_code=200)

    # ------------------------------------------------------------------ test hooks

    @app.post("/_sandbox/grants")
    async def sandbox_grant(request: Request) -> Response:
        payload = json.loads(await request.body() or b"{}")
        tenant = str(payload.get("tenant", "")).strip()
        client_id = payload.get("client_id") or next(iter(sim.oauth.clients))
        if not tenant or client_id not in sim.oauth.clients:
            return JSONResponse({"error": "tenant and a known client_id are required"},
                                status_code=400)
        sim.books.realm(tenant)
        body = sim.oauth.new_grant(client_id, tenant, f"{ACCOUNTING_SCOPE} openid")
        return JSONResponse(body)

    @app.post("/_sandbox/tokens/{tenant}/expire")
    async def sandbox_expire(tenant: str) -> dict[str, int]:
        return {"expired": sim.oauth.expire_realm(tenant)}

    @app.get("/_sandbox/books/{tenant}")
    async def sandbox_books(tenant: str) -> Response:
        return _json(200, sim.books.realm(tenant).dump())

    @app.post("/_sandbox/seed/{tenant}")
    async def sandbox_seed(tenant: str, request: Request) -> Response:
        try:
            data = _parse_json(await request.body())
            if not isinstance(data, dict):
                raise errors.validation("2010", "Invalid seed", "Expected a JSON object")
            created = sim.books.seed(sim.books.realm(tenant), data, sim.clock())
        except QBOFault as exc:
            return sim.fault_response(exc)
        return _json(200, created)

    # ------------------------------------------------------------------ the API

    @app.api_route("/v3/company/{realm_id}/{rest:path}", methods=["GET", "POST"])
    async def api(realm_id: str, rest: str, request: Request) -> Response:
        parts = [p for p in rest.split("/") if p]
        resource = parts[0].lower() if parts else ""
        is_batch = resource == "batch"
        try:
            auth = request.headers.get("authorization", "")
            if not auth.lower().startswith("bearer "):
                raise errors.authentication_fault()
            grant = sim.oauth.check_access(auth[7:].strip())
            if grant is None:
                raise errors.authentication_fault()
            if grant.realm_id != realm_id:
                raise errors.authorization_fault(realm_id)
            if board.plan(realm_id).revoked:
                raise errors.authentication_fault()
            usage = sim.admit(realm_id, is_batch)
        except QBOFault as exc:
            return sim.fault_response(exc)
        usage.in_flight += 1
        try:
            fault = board.decide(realm_id)
            if fault.latency_s > 0:
                await asyncio.sleep(fault.latency_s)
            if fault.throttle:
                return sim.fault_response(errors.throttle_fault(sim.limits.retry_after_s))
            if fault.fail_5xx:
                return sim.fault_response(errors.system_fault())
            if fault.revoked:
                return sim.fault_response(errors.authentication_fault())
            is_write = request.method == "POST" and resource != "query"
            raw = await request.body()
            # From here to storing the reply there is no await: replay check, execution and
            # storage are atomic with respect to other requests on the event loop.
            try:
                rid = _check_params(sim.limits, request, is_batch)
            except QBOFault as exc:
                return sim.fault_response(exc)
            key = (realm_id, rid) if rid is not None and request.method == "POST" else None
            if key is not None and key in sim.replies:
                stored = sim.replies[key]
                if sim.clock() - stored.at <= sim.limits.requestid_retention_s:
                    return Response(stored.body, status_code=stored.status,
                                    media_type="application/json")
                del sim.replies[key]  # outside the retention window: execute again
            try:
                status, body = _execute(sim, realm_id, request, parts, raw)
                response = _json(status, body)
            except QBOFault as exc:
                response = sim.fault_response(exc)
            if key is not None:
                sim.replies[key] = _Stored(response.status_code, bytes(response.body),
                                           sim.clock())
            if is_write and fault.hang_after_apply_s > 0:
                await asyncio.sleep(fault.hang_after_apply_s)
            if is_write and fault.fail_5xx_after_apply:
                return sim.fault_response(errors.system_fault(500))
            response.headers["intuit_tid"] = secrets.token_hex(16)
            return response
        finally:
            usage.in_flight -= 1

    return app


def _check_params(limits: QuickBooksLimits, request: Request, is_batch: bool) -> str | None:
    mv = request.query_params.get("minorversion")
    if mv is not None and (not mv.isdigit() or int(mv) < limits.min_minor_version):
        raise errors.validation(
            "2010",
            "Invalid minorversion",
            f"minorversion {mv!r} is not supported: minor versions 1-74 were retired on "
            f"2025-08-01; send minorversion={limits.min_minor_version} or later.",
            "minorversion",
        )
    rid = request.query_params.get("requestid")
    if rid is not None:
        cap = limits.max_batch_requestid_len if is_batch else limits.max_requestid_len
        if not rid or len(rid) > cap:
            raise errors.validation(
                "2050",
                "String length is either shorter or longer than supported by specification",
                f"requestid must be 1 to {cap} characters; got {len(rid)}",
                "requestid",
            )
    return rid


def _execute(
    sim: QuickBooksSim, realm_id: str, request: Request, parts: list[str], raw: bytes
) -> tuple[int, dict[str, Any]]:
    realm = sim.books.realm(realm_id)
    books = sim.books
    method = request.method
    resource = parts[0].lower() if parts else ""
    now = sim.now_str()
    if resource == "query":
        if method == "GET":
            text = request.query_params.get("query")
        else:
            text = raw.decode("utf-8", errors="replace")
        if not text:
            raise _query_fault(QueryError("4000", "No query supplied"))
        try:
            return 200, {"QueryResponse": books.query(realm, text), "time": now}
        except QueryError as exc:
            raise _query_fault(exc) from None
    if resource == "cdc" and method == "GET":
        return 200, _cdc(sim, realm_id, request)
    if resource == "batch" and method == "POST":
        return 200, _batch(sim, realm_id, _parse_json(raw))
    if resource == "companyinfo" and method == "GET":
        return 200, {"CompanyInfo": {
            "Id": realm_id, "SyncToken": "0", "CompanyName": realm.company_name,
            "Country": realm.country, "domain": "QBO", "sparse": False}, "time": now}
    if resource == "preferences" and method == "GET":
        return 200, {"Preferences": {
            "CurrencyPrefs": {"MultiCurrencyEnabled": True,
                              "HomeCurrency": {"value": realm.home_currency}},
            # Automated sales tax exists only for US companies (providers.md 1.8).
            "TaxPrefs": {"PartnerTaxEnabled": realm.region == "US", "UsingSalesTax": True},
            "SalesFormsPrefs": {"CustomTxnNumbers": True},
            "domain": "QBO", "sparse": False}, "time": now}
    entity = ENTITY_BY_PATH.get(resource)
    if entity is not None:
        if method == "GET" and len(parts) == 2:
            return 200, {**books.read(realm, entity, parts[1]), "time": now}
        if method == "POST" and len(parts) == 1:
            operation = request.query_params.get("operation")
            if operation not in (None, "create", "update", "delete", "void"):
                raise errors.validation("2010", "Unsupported Operation",
                                        f"Operation {operation} is not supported")
            result = books.write(realm, entity, operation or "create", _parse_json(raw))
            return 200, {**result, "time": now}
    raise QBOFault(400, "2010", "Unsupported Operation",
                   f"Operation {method} /{'/'.join(parts)} is not supported")


def _batch(sim: QuickBooksSim, realm_id: str, payload: Any) -> dict[str, Any]:
    items = payload.get("BatchItemRequest") if isinstance(payload, dict) else None
    if not isinstance(items, list) or not items:
        raise errors.required("BatchItemRequest")
    if len(items) > sim.limits.max_batch_items:
        raise errors.validation(
            "2010", "Batch size limit exceeded",
            f"A batch may carry at most {sim.limits.max_batch_items} operations; "
            f"got {len(items)}",
            "BatchItemRequest",
        )
    seen: set[str] = set()
    for item in items:
        bid = item.get("bId") if isinstance(item, dict) else None
        if not isinstance(bid, str) or not bid or len(bid) > sim.limits.max_bid_len \
                or bid in seen:
            raise errors.validation(
                "2010", "Invalid bId",
                f"Every batch item needs a unique bId of 1 to {sim.limits.max_bid_len} "
                f"characters; got {bid!r}",
                "bId",
            )
        seen.add(bid)
    realm = sim.books.realm(realm_id)
    out: list[dict[str, Any]] = []
    for item in items:
        bid = item["bId"]
        try:
            if "Query" in item:
                try:
                    qr = sim.books.query(realm, str(item["Query"]))
                except QueryError as exc:
                    raise _query_fault(exc) from None
                out.append({"bId": bid, "QueryResponse": qr})
                continue
            names = [name for name in ENTITIES if name in item]
            if len(names) != 1:
                raise errors.validation(
                    "2010", "Invalid batch item",
                    "A batch item needs exactly one entity object or a Query", "bId")
            operation = item.get("operation")
            if operation not in ("create", "update", "delete", "void"):
                raise errors.validation("2010", "Unsupported Operation",
                                        f"Operation {operation} is not supported")
            result = sim.books.write(realm, names[0], operation, item[names[0]])
            out.append({"bId": bid, **result})
        except QBOFault as exc:
            out.append({"bId": bid, "Fault": exc.fault()})
    return {"BatchItemResponse": out, "time": sim.now_str()}


def _cdc(sim: QuickBooksSim, realm_id: str, request: Request) -> dict[str, Any]:
    names = request.query_params.get("entities", "")
    canonical = {name.lower(): name for name in ENTITIES}
    entities: list[str] = []
    for raw_name in (n.strip() for n in names.split(",") if n.strip()):
        name = canonical.get(raw_name.lower())
        if name is None:
            raise errors.validation("2010", "Invalid entities",
                                    f"CDC does not support entity {raw_name!r}", "entities")
        entities.append(name)
    if not entities:
        raise errors.required("entities")
    since_raw = request.query_params.get("changedSince")
    if not since_raw:
        raise errors.required("changedSince")
    try:
        since = datetime.fromisoformat(since_raw.replace("Z", "+00:00"))
    except ValueError:
        raise errors.validation("2010", "Invalid changedSince",
                                f"changedSince {since_raw!r} is not an ISO-8601 date-time",
                                "changedSince") from None
    if since.tzinfo is None:
        since = since.replace(tzinfo=COMPANY_TZ)
    now = datetime.fromtimestamp(sim.clock(), COMPANY_TZ)
    if now - since > timedelta(days=sim.limits.cdc_lookback_days):
        raise errors.validation(
            "2010", "Invalid changedSince",
            f"changedSince may be at most {sim.limits.cdc_lookback_days} days in the past",
            "changedSince",
        )
    realm = sim.books.realm(realm_id)
    return {
        "CDCResponse": [{"QueryResponse": sim.books.cdc(realm, entities, since.timestamp())}],
        "time": sim.now_str(),
    }
