"""The control plane's HTTP API for Settings > Integrations (FastAPI, described by OpenAPI).

Every route needs `Authorization: Bearer <control token>` except two kinds: the OAuth
redirect, protected by its single-use state (the browser carries no token), and the
provider webhooks, authenticated by each provider's HMAC signature (control/webhooks.py).
Every refusal has the body `{"error": {"code": "...", "message": "...what to do..."}}`.
Handlers are plain `def`: FastAPI runs them in its thread pool, since they call providers.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

import structlog
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from consumers.engine import SyncEngine
from control import oauth_flow, webhooks
from control import service as svc
from control.context import ControlContext, ControlError, KafkaSide
from control.operations import after_connect
from schemas.redaction import scrub
from service.bootstrap import Services
from service.config import LOCAL_MODES

__all__ = ["MAX_BODY_BYTES", "create_control_app"]

log = structlog.get_logger("control")

Account = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$",
                              description="BlueClerk account id")]


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class ConnectRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    provider: Literal["quickbooks", "xero", "freshbooks"]


class CallbackRequest(BaseModel):
    """The query parameters the provider put on the redirect."""

    model_config = ConfigDict(extra="forbid")
    state: str | None = None
    code: str | None = None
    error: str | None = None
    error_description: str | None = None
    realmId: str | None = None  # QuickBooks names it so
    tenant: str | None = Field(None, description="Xero organisation / FreshBooks account to "
                               "connect when the consent authorised several")
    binding: str | None = Field(None, description="the binding returned when the connection "
                                "was started (the bc_oauth_binding cookie)")


class OrganisationChoice(BaseModel):
    """The organisation chosen when a consent authorised several."""

    model_config = ConfigDict(extra="forbid")
    state: str = Field(min_length=1)
    tenant: str = Field(min_length=1)
    binding: str | None = None


class SelectionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    provider_id: str = Field(min_length=1)
    action: Literal["import", "link"] = "import"
    link_to: str | None = Field(None, description="BlueClerk id to link to (action=link)")
    customer_type: Literal["Homeowner", "Business", "Builder"] | None = None


class ImportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    selections: list[SelectionIn] = Field(min_length=1)


class MappingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    income_account_id: str = Field(min_length=1)


class TaxMappingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tax_code: str = Field(min_length=1, description="the provider's tax code (QuickBooks "
                          "TaxCode id or TAX, Xero TaxType, FreshBooks tax name)")


class SettingsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sync_customers: bool | None = None
    sync_items: bool | None = None
    sync_invoices: bool | None = None
    sync_payments: bool | None = None
    auto_sync: bool | None = Field(None, description="recommended: on")


class ReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    record_id: int | None = None


# --------------------------------------------------------------------------- responses
# Typed replies, so the OpenAPI document describes every answer and a client can be
# generated. The fields listed are the ones clients key on; replies may carry more
# (extra="allow": nothing the service functions return is dropped).


class _Reply(BaseModel):
    model_config = ConfigDict(extra="allow")


class Health(BaseModel):
    status: str = Field(description="ok")


class AuthorizationStarted(_Reply):
    """Send the user to `authorization_url`; the browser comes back to /oauth/callback."""

    account_id: str
    provider: str
    authorization_url: str
    state: str
    binding: str = Field(description="one-time browser binding; also the bc_oauth_binding "
                         "cookie on /oauth")
    expires_at: str


class Connected(_Reply):
    account_id: str
    provider: str
    tenant_id: str
    tenant_name: str | None = None
    status: str
    connected_at: str
    connection: str = Field(description="new, reconnect or new_company")
    reconnected: bool
    tax_rates: dict[str, Any] = Field(default_factory=dict,
                                      description="tax rates matched automatically")
    redriven: dict[str, int] = Field(default_factory=dict,
                                     description="statuses of the changes re-driven")
    abandoned: dict[str, int] = Field(default_factory=dict)


class AccountStatus(_Reply):
    account_id: str
    health: str
    what_to_do: str | None = None
    connection: dict[str, Any] | None = None
    settings: dict[str, Any] | None = None
    last_sync_at: str | None = None
    counts_by_status: dict[str, int] = Field(default_factory=dict)
    parked: dict[str, int] = Field(default_factory=dict)
    dead_letters_pending_replay: int = 0
    recent_errors: list[dict[str, Any]] = Field(default_factory=list)


class Disconnected(_Reply):
    account_id: str
    provider: str
    status: str
    tokens_revoked: bool
    revoke_error: str | None = None
    tokens_deleted: bool
    links_kept: int


class SyncNowResult(_Reply):
    account_id: str
    auto_sync: bool
    results: dict[str, int] = Field(description="final statuses of the changes sent, by status")
    processed: int
    still_waiting: int


class ReplayedDeadLetter(_Reply):
    id: int
    event_id: str | None = None
    outcome: str
    error_code: str | None = None
    message: str | None = None


class ReplayResult(_Reply):
    replayed: int
    results: list[ReplayedDeadLetter]


class WizardProgress(_Reply):
    account_id: str
    steps: dict[str, Any]
    next_step: str | None = None
    complete: bool


class WizardStarted(WizardProgress):
    tax_rates: dict[str, Any] = Field(default_factory=dict)


class WizardStep(_Reply):
    """A wizard step's view or the result of one of its actions."""

    account_id: str
    provider: str | None = None
    progress: dict[str, Any] | None = None


class CustomersStep(WizardStep):
    customers: list[dict[str, Any]]


class ItemsStep(WizardStep):
    items: list[dict[str, Any]]


class TaxRatesStep(WizardStep):
    tax_codes: list[dict[str, Any]]
    tax_rates: list[dict[str, Any]]
    unmapped: list[Any] = Field(description="BlueClerk tax rate keys with no tax code yet")


class SyncSettings(_Reply):
    account_id: str
    sync_customers: bool | None = None
    sync_items: bool | None = None
    sync_invoices: bool | None = None
    sync_payments: bool | None = None
    auto_sync: bool | None = None


class WizardSummary(WizardStep):
    tenant_id: str
    customers: dict[str, Any]
    items: dict[str, Any]
    mappings: list[dict[str, Any]]
    unmapped: list[dict[str, Any]]
    settings: dict[str, Any]


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 404, 409, 422, 502, 503)}


_BEARER = HTTPBearer(auto_error=False, description="the service token (CONTROL_API_TOKEN)")


def _error(code: str, message: str, status: int,
           details: dict[str, Any] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": scrub(message), **(details or {})}},
                        status_code=status)


# Bodies the control API accepts at most (the largest is a wizard import selection).
MAX_BODY_BYTES = 1_000_000
_OPEN_PATHS = ("/oauth/callback", "/healthz", "/webhooks/")


class GuardMiddleware:
    """Authenticates /v1 requests and caps body size before any body is read: an
    unauthenticated or oversized request is answered 401/413 at once, without reading
    (or buffering) what it sends. Webhooks (signed) and the OAuth redirect stay open."""

    def __init__(self, app: Any, token: Callable[[], str]) -> None:
        self._app = app
        self._token = token

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        path: str = scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        if path.startswith("/v1/"):
            scheme, _, given = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                    given.encode(), self._token().encode()):
                response = _error("unauthorized", "send the service token as "
                                  "`Authorization: Bearer <token>` (CONTROL_API_TOKEN)", 401)
                response.headers["WWW-Authenticate"] = "Bearer"
                await _reply(send, response)
                return
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            await _reply(send, _error("payload_too_large", f"the body is larger than "
                                      f"{MAX_BODY_BYTES} bytes", 413))
            return
        received = 0
        refused = False

        async def capped() -> Any:
            # A body without a (truthful) length is cut off at the cap: answer 413, and
            # tell the app the client went away.
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > MAX_BODY_BYTES and not refused:
                    refused = True
                    await _reply(send, _error("payload_too_large", f"the body is larger "
                                              f"than {MAX_BODY_BYTES} bytes", 413))
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Any) -> None:
            if not refused:  # after our 413, nothing the app says reaches the client
                await send(message)

        try:
            await self._app(scope, capped, guarded_send)
        except Exception:
            if not refused:
                raise


async def _reply(send: Any, response: JSONResponse) -> None:
    await send({"type": "http.response.start", "status": response.status_code,
                "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


def create_control_app(services: Services,
                       engine_factory: Callable[[], SyncEngine] | None = None,
                       publish_outbox: Callable[[], int] | None = None) -> FastAPI:
    """The API over `services`. Without `engine_factory` the engine (and the outbox
    publisher) are built from Settings on first use, against KAFKA_BOOTSTRAP_SERVERS."""
    side: KafkaSide | None = None
    if engine_factory is None:
        side = KafkaSide(services)
        engine_factory = side.engine
        publish_outbox = publish_outbox or side.publish_outbox
    ctx = ControlContext(services, engine_factory, publish_outbox)

    def authorized(credentials: Annotated[HTTPAuthorizationCredentials | None,
                                          Depends(_BEARER)]) -> None:
        expected = services.settings.control_token
        if credentials is None or credentials.scheme.lower() != "bearer" or \
                not hmac.compare_digest(credentials.credentials.encode(), expected.encode()):
            raise ControlError("unauthorized", "send the service token as "
                               "`Authorization: Bearer <token>` (CONTROL_API_TOKEN)", 401)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if side is not None:
            side.close()

    app = FastAPI(title="BlueClerk accounting sync: control plane", version="1",
                  description=__doc__, responses=_ERRORS, lifespan=lifespan)
    app.state.control = ctx
    app.add_middleware(GuardMiddleware, token=lambda: services.settings.control_token)

    @app.exception_handler(ControlError)
    async def control_error(_request: Request, exc: ControlError) -> JSONResponse:
        response = _error(exc.code, exc.message, exc.status, exc.details)
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: "
            f"{e.get('msg')}" for e in exc.errors()[:5])
        return _error("invalid_request", f"the request is not valid ({problems}); correct it "
                      "and send it again", 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = {404: "no such endpoint; see /openapi.json",
                   405: "this endpoint does not take that method; see /openapi.json"}.get(
            exc.status_code, str(exc.detail))
        return _error(code, message, exc.status_code)

    @app.exception_handler(Exception)
    async def crashed(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("control_api_error", error_type=type(exc).__name__)
        return _error("internal", "the control plane failed unexpectedly; try again, and "
                      "report it if it persists", 500)

    @app.get("/healthz",
             response_model=Health, response_model_exclude_unset=True,
             tags=["ops"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    auth = [Depends(authorized)]

    # -- connect -----------------------------------------------------------------------
    @app.post("/v1/accounts/{account_id}/connection",
              response_model=AuthorizationStarted, response_model_exclude_unset=True,
             tags=["connection"], dependencies=auth,
              summary="Start connecting an accounting system (returns the consent URL)")
    def connect(account_id: Account, body: ConnectRequest, response: Response
                ) -> dict[str, Any]:
        start = oauth_flow.start_authorization(services, account_id, body.provider)
        # For a browser that started the connection through this API: the redirect back
        # to /oauth/callback carries the binding in this cookie.
        response.set_cookie(oauth_flow.BINDING_COOKIE, start.binding, httponly=True,
                            secure=services.settings.mode not in LOCAL_MODES,
                            samesite="lax", path="/oauth", max_age=600)
        return start.to_json()

    @app.get("/oauth/callback",
             response_model=Connected, response_model_exclude_unset=True,
             tags=["connection"],
             summary="The OAuth redirect target (single-use state + the starter's binding)")
    def oauth_redirect(request: Request, state: str | None = None, code: str | None = None,
                       error: str | None = None, error_description: str | None = None,
                       realmId: str | None = None,  # QuickBooks names it so
                       tenant: str | None = None) -> dict[str, Any]:
        binding = request.cookies.get(oauth_flow.BINDING_COOKIE) or \
            request.headers.get("x-blueclerk-oauth-binding")
        return after_connect(ctx, oauth_flow.complete_authorization(
            services, oauth_flow.CallbackParams(state, code, error, error_description,
                                                realmId, tenant, binding)))

    @app.post("/v1/oauth/callback",
              response_model=Connected, response_model_exclude_unset=True,
             tags=["connection"], dependencies=auth,
              summary="Complete a connection with the redirect's parameters")
    def oauth_callback(body: CallbackRequest) -> dict[str, Any]:
        return after_connect(ctx, oauth_flow.complete_authorization(
            services, oauth_flow.CallbackParams(body.state, body.code, body.error,
                                                body.error_description, body.realmId,
                                                body.tenant, body.binding)))

    @app.post("/v1/accounts/{account_id}/connection/organisation",
              response_model=Connected, response_model_exclude_unset=True,
             tags=["connection"],
              dependencies=auth,
              summary="Choose the organisation when one consent authorised several")
    def choose_organisation(account_id: Account, body: OrganisationChoice) -> dict[str, Any]:
        connected = oauth_flow.choose_organisation(services, body.state, body.binding,
                                                   body.tenant)
        if connected.info.account_id != account_id:
            raise ControlError("invalid_state", "this authorization belongs to another "
                               "account; start the connection again", 400)
        return after_connect(ctx, connected)

    @app.get("/v1/accounts/{account_id}/status",
             response_model=AccountStatus, response_model_exclude_unset=True,
             tags=["connection"], dependencies=auth,
             summary="Connection health, last sync, counts by status, recent errors")
    def status(account_id: Account,
               recent: Annotated[int, Query(ge=1, le=200)] = 20) -> dict[str, Any]:
        return svc.status(ctx, account_id, recent)

    @app.post("/v1/accounts/{account_id}/disconnect",
              response_model=Disconnected, response_model_exclude_unset=True,
             tags=["connection"], dependencies=auth,
              summary="Revoke the tokens and stop syncing (links are kept)")
    def disconnect(account_id: Account) -> dict[str, Any]:
        return svc.disconnect(ctx, account_id)

    @app.post("/v1/accounts/{account_id}/sync-now",
              response_model=SyncNowResult, response_model_exclude_unset=True,
             tags=["sync"], dependencies=auth,
              summary="Send the changes that waited for Sync Now (auto-sync off)")
    def sync_now(account_id: Account) -> dict[str, Any]:
        return svc.sync_now(ctx, account_id)

    @app.post("/v1/accounts/{account_id}/dead-letters/replay",
              response_model=ReplayResult, response_model_exclude_unset=True,
             tags=["sync"],
              dependencies=auth, summary="Replay dead-lettered events after the cause is fixed")
    def replay(account_id: Account, body: ReplayRequest | None = None) -> dict[str, Any]:
        return svc.replay_dead_letters(ctx, account_id=account_id,
                                       record_id=body.record_id if body else None)

    # -- wizard ------------------------------------------------------------------------
    @app.get("/v1/accounts/{account_id}/wizard",
             response_model=WizardProgress, response_model_exclude_unset=True,
             tags=["wizard"], dependencies=auth,
             summary="Wizard progress: steps done, skipped or pending")
    def progress(account_id: Account) -> dict[str, Any]:
        return svc.wizard_progress(ctx, account_id)

    @app.post("/v1/accounts/{account_id}/wizard/start",
              response_model=WizardStarted, response_model_exclude_unset=True,
             tags=["wizard"], dependencies=auth,
              summary="Open or re-run the wizard (progress is kept)")
    def start(account_id: Account) -> dict[str, Any]:
        progress = svc.start_wizard(ctx, account_id)
        # A re-run matches tax rates seen since the last run (step 3 shows the rest).
        return {**progress, "tax_rates": svc.auto_match_tax_rates(ctx, account_id)}

    @app.post("/v1/accounts/{account_id}/wizard/close",
              response_model=WizardProgress, response_model_exclude_unset=True,
             tags=["wizard"], dependencies=auth)
    def close(account_id: Account) -> dict[str, Any]:
        return svc.close_wizard(ctx, account_id)

    @app.post("/v1/accounts/{account_id}/wizard/steps/{step}/skip",
              response_model=WizardProgress, response_model_exclude_unset=True,
             tags=["wizard"],
              dependencies=auth)
    def skip(account_id: Account,
             step: Literal["customers", "items", "accounts", "settings", "summary"]
             ) -> dict[str, Any]:
        return svc.skip_step(ctx, account_id, step)

    @app.get("/v1/accounts/{account_id}/wizard/customers",
             response_model=CustomersStep, response_model_exclude_unset=True,
             tags=["wizard"], dependencies=auth,
             summary="Step 1: customers with suggested type and duplicate flags")
    def customers(account_id: Account) -> dict[str, Any]:
        return svc.list_customers(ctx, account_id)

    @app.post("/v1/accounts/{account_id}/wizard/customers/import",
              response_model=WizardStep, response_model_exclude_unset=True,
             tags=["wizard"],
              dependencies=auth, summary="Step 1: import or link the selected customers")
    def import_customers(account_id: Account, body: ImportRequest) -> dict[str, Any]:
        return svc.import_customers(ctx, account_id,
                                    [s.model_dump() for s in body.selections])

    @app.get("/v1/accounts/{account_id}/wizard/items",
             response_model=ItemsStep, response_model_exclude_unset=True,
             tags=["wizard"], dependencies=auth,
             summary="Step 2: services and items with matching BlueClerk items")
    def items(account_id: Account) -> dict[str, Any]:
        return svc.list_items(ctx, account_id)

    @app.post("/v1/accounts/{account_id}/wizard/items/import",
              response_model=WizardStep, response_model_exclude_unset=True,
             tags=["wizard"],
              dependencies=auth, summary="Step 2: import or link the selected items")
    def import_items(account_id: Account, body: ImportRequest) -> dict[str, Any]:
        return svc.import_items(ctx, account_id,
                                [s.model_dump(exclude={"customer_type"})
                                 for s in body.selections])

    @app.get("/v1/accounts/{account_id}/wizard/income-accounts",
             response_model=WizardStep, response_model_exclude_unset=True,
             tags=["wizard"],
             dependencies=auth, summary="Step 3: income accounts, mappings, unmapped items")
    def accounts(account_id: Account) -> dict[str, Any]:
        return svc.income_accounts(ctx, account_id)

    @app.put("/v1/accounts/{account_id}/mappings/{item_id}",
             response_model=WizardStep, response_model_exclude_unset=True,
             tags=["wizard"],
             dependencies=auth, summary="Step 3: map one item (or change its mapping)")
    def map_item(account_id: Account, item_id: Annotated[str, Path(min_length=1,
                                                                   max_length=128)],
                 body: MappingRequest) -> dict[str, Any]:
        return svc.map_item(ctx, account_id, item_id, body.income_account_id)

    @app.post("/v1/accounts/{account_id}/mappings/apply-to-unmapped",
              response_model=WizardStep, response_model_exclude_unset=True,
             tags=["wizard"],
              dependencies=auth, summary="Step 3: map every unmapped item to one account")
    def map_all(account_id: Account, body: MappingRequest) -> dict[str, Any]:
        return svc.map_all_unmapped(ctx, account_id, body.income_account_id)

    @app.get("/v1/accounts/{account_id}/wizard/tax-rates",
             response_model=TaxRatesStep, response_model_exclude_unset=True,
             tags=["wizard"],
             dependencies=auth, summary="Step 3 (taxes): tax codes, mappings with their "
             "reasons, rates to map with candidates")
    def taxes(account_id: Account) -> dict[str, Any]:
        return svc.tax_rates(ctx, account_id)

    @app.put("/v1/accounts/{account_id}/tax-mappings/{tax_key}",
             response_model=WizardStep, response_model_exclude_unset=True,
             tags=["wizard"],
             dependencies=auth, summary="Step 3 (taxes): map one BlueClerk tax rate")
    def map_tax(account_id: Account, tax_key: Annotated[str, Path(min_length=1,
                                                                  max_length=128)],
                body: TaxMappingRequest) -> dict[str, Any]:
        return svc.map_tax_rate(ctx, account_id, tax_key, body.tax_code)

    @app.post("/v1/accounts/{account_id}/tax-mappings/apply-to-unmapped",
              response_model=WizardStep, response_model_exclude_unset=True,
             tags=["wizard"],
              dependencies=auth, summary="Step 3 (taxes): map every unmapped rate to one code")
    def map_all_taxes(account_id: Account, body: TaxMappingRequest) -> dict[str, Any]:
        return svc.map_all_unmapped_tax_rates(ctx, account_id, body.tax_code)

    @app.get("/v1/accounts/{account_id}/settings",
             response_model=SyncSettings, response_model_exclude_unset=True,
             tags=["wizard"], dependencies=auth,
             summary="Step 4: sync settings")
    def get_settings(account_id: Account) -> dict[str, Any]:
        return svc.get_settings(ctx, account_id)

    @app.put("/v1/accounts/{account_id}/settings",
             response_model=SyncSettings, response_model_exclude_unset=True,
             tags=["wizard"], dependencies=auth,
             summary="Step 4: change sync settings (any time)")
    def put_settings(account_id: Account, body: SettingsRequest) -> dict[str, Any]:
        return svc.update_settings(ctx, account_id, body.model_dump(exclude_none=True))

    @app.get("/v1/accounts/{account_id}/wizard/summary",
             response_model=WizardSummary, response_model_exclude_unset=True,
             tags=["wizard"], dependencies=auth,
             summary="Step 5: what was imported, linked and mapped; what is unmapped")
    def summary(account_id: Account) -> dict[str, Any]:
        return svc.summary(ctx, account_id)

    app.include_router(webhooks.router(services))  # signed by the providers, no bearer
    return app
