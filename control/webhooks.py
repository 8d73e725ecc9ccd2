"""Provider webhook receivers: a notification from the books triggers an inbound poll.

`POST /webhooks/quickbooks`, `/webhooks/xero` and `/webhooks/freshbooks` are not behind
the control API's bearer token (providers cannot send it): the provider's HMAC signature
is their authentication. Each receiver

1. reads the raw body and checks the signature with `hmac.compare_digest`; a missing or
   wrong signature (or an unset secret) is answered 401 with an empty body, and neither
   the secret nor the signature is ever logged;
2. reads the tenants the notification is about (QuickBooks realmId / intuitaccountid,
   Xero tenantId, FreshBooks account_id) and finds the active BlueClerk connections of
   that provider and tenant (`connections.tenant_id`); unknown tenants are ignored;
3. queues `poll_account(account)` for each of those accounts on a background thread and
   answers 200 with an empty body at once: the answer never waits for a provider call
   (QuickBooks wants it within 3 s, Xero within 5 s, FreshBooks within 10 s).

Notifications carry ids only; the poll reads every change since the account's cursor, so
the entities named in the body are not needed (and Xero's missing payment/item events are
caught too). Polls are single-flight per account: while a poll is queued for an account,
new notifications for it are absorbed by it; a notification that arrives while a poll is
running queues exactly one more poll after it.

Secrets come from the environment (`WebhookSecrets.from_env`): QBO_WEBHOOK_VERIFIER (the
app's webhook verifier token), XERO_WEBHOOK_KEY (the webhook signing key) and
FRESHBOOKS_WEBHOOK_VERIFIER (the verifier FreshBooks sent when the callback was
registered). Signatures, per shared/providers.md:

- QuickBooks `intuit-signature` = base64(HMAC-SHA256(raw body, verifier token)); the
  body is the legacy `{"eventNotifications": [{"realmId", ...}]}` or a CloudEvents array
  `[{"specversion": "1.0", "intuitaccountid", ...}]`; both are read.
- Xero `x-xero-signature` = base64(HMAC-SHA256(raw body, webhook key)); an
  intent-to-receive delivery (`events: []`) gets 200 when signed and 401 when not.
- FreshBooks `X-FreshBooks-Hmac-SHA256` = base64(HMAC-SHA256(verifier, json.dumps(form)))
  where form is the form-urlencoded fields as a dict of strings in received order, dumped
  with Python's default separators: NOT the raw body. A verification request (a form with
  a `verifier` field) is answered 200 and logged: the callback must then be activated
  with that verifier (`PUT /events/account/{account}/events/callbacks/{id}`), which must
  also be set as FRESHBOOKS_WEBHOOK_VERIFIER. The verifier value itself is not logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qsl

import structlog
from fastapi import APIRouter, FastAPI, Request, Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from consumers.inbound import InboundPoller
from service.bootstrap import Services
from state.models import Connection

__all__ = ["MAX_BODY_BYTES", "PollScheduler", "Poller", "WebhookRouter", "WebhookSecrets",
           "freshbooks_form", "freshbooks_message", "freshbooks_signature",
           "quickbooks_realms", "router", "sign", "xero_tenants"]

log = structlog.get_logger("webhooks")

MAX_BODY_BYTES = 1 << 20  # notifications are ids only; anything bigger is not one
_ENV = {"quickbooks": "QBO_WEBHOOK_VERIFIER", "xero": "XERO_WEBHOOK_KEY",
        "freshbooks": "FRESHBOOKS_WEBHOOK_VERIFIER"}


@dataclass(frozen=True, slots=True)
class WebhookSecrets:
    """The three signing secrets; kept out of `repr` so they never reach a log."""

    quickbooks_verifier: str | None = field(default=None, repr=False)
    xero_key: str | None = field(default=None, repr=False)
    freshbooks_verifier: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WebhookSecrets:
        env = os.environ if environ is None else environ
        return cls(env.get(_ENV["quickbooks"]) or None, env.get(_ENV["xero"]) or None,
                   env.get(_ENV["freshbooks"]) or None)

    def for_provider(self, provider: str) -> str | None:
        return {"quickbooks": self.quickbooks_verifier, "xero": self.xero_key,
                "freshbooks": self.freshbooks_verifier}[provider]


# --------------------------------------------------------------------------- signatures


def sign(secret: str, message: bytes) -> str:
    """base64(HMAC-SHA256(message, secret)): the three providers' signature."""
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def _signature_ok(secret: str, message: bytes, signature: str) -> bool:
    try:
        given = signature.strip().encode("latin-1")  # Starlette decodes headers as latin-1
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(sign(secret, message).encode("ascii"), given)


def freshbooks_form(body: bytes) -> dict[str, str] | None:
    """The form fields as a dict of strings in received order (None: not a form)."""
    try:
        text = body.decode("utf-8")
        return dict(parse_qsl(text, keep_blank_values=True))
    except (UnicodeDecodeError, ValueError):
        return None


def freshbooks_message(form: Mapping[str, str]) -> bytes:
    """What FreshBooks signs: Python's `json.dumps` of the form dict (strings, received
    order, default separators `", "` and `": "`), not the raw body."""
    return json.dumps(dict(form)).encode("utf-8")


def freshbooks_signature(secret: str, form: Mapping[str, str]) -> str:
    return sign(secret, freshbooks_message(form))


# --------------------------------------------------------------------------- bodies


def _unique(values: Iterable[Any]) -> list[str]:
    out: dict[str, None] = {}
    for value in values:
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            out[str(value)] = None
    return list(out)


def quickbooks_realms(payload: Any) -> list[str] | None:
    """Realm ids of a legacy `eventNotifications` body or a CloudEvents array (or a single
    CloudEvent); None when the body is neither."""
    if isinstance(payload, dict) and isinstance(payload.get("eventNotifications"), list):
        return _unique(n.get("realmId") for n in payload["eventNotifications"]
                       if isinstance(n, dict))
    if isinstance(payload, dict) and "intuitaccountid" in payload:
        payload = [payload]
    if isinstance(payload, list):
        return _unique(e.get("intuitaccountid") for e in payload if isinstance(e, dict))
    return None


def xero_tenants(payload: Any) -> list[str] | None:
    """Tenant ids of a Xero delivery ([] for intent-to-receive); None when malformed."""
    if not isinstance(payload, dict) or not isinstance(payload.get("events"), list):
        return None
    return _unique(e.get("tenantId") for e in payload["events"] if isinstance(e, dict))


# --------------------------------------------------------------------------- polling


class Poller(Protocol):
    def poll_account(self, account_id: str) -> int: ...


class PollScheduler:
    """Runs `poll_account` on a small thread pool, single-flight per account.

    An account is "queued" from `schedule` until its poll starts; a second `schedule`
    meanwhile is absorbed. One that arrives while the poll runs queues one more poll,
    started when the running one ends (the running one may have read the books before
    the change the notification is about). Polls of one account never overlap.
    """

    def __init__(self, poller_factory: Callable[[], Poller], max_workers: int = 4) -> None:
        self._factory = poller_factory
        self._max_workers = max_workers
        self._cond = threading.Condition()
        self._queued: set[str] = set()
        self._running: set[str] = set()
        self._executor: ThreadPoolExecutor | None = None

    def schedule(self, account_id: str) -> bool:
        """Queue a poll; False when a queued poll of this account absorbs the request."""
        with self._cond:
            if account_id in self._queued:
                return False
            self._queued.add(account_id)
            if account_id not in self._running:
                self._submit(account_id)
            return True

    def _submit(self, account_id: str) -> None:  # under self._cond
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self._max_workers,
                                                thread_name_prefix="webhook-poll")
        self._executor.submit(self._run, account_id)

    def _run(self, account_id: str) -> None:
        with self._cond:
            if account_id not in self._queued:  # dropped by close()
                self._cond.notify_all()
                return
            self._queued.discard(account_id)
            self._running.add(account_id)
        try:
            events = self._factory().poll_account(account_id)
            log.info("webhook_poll_done", account_id=account_id, events=events)
        except Exception as exc:  # the next notification or the periodic poll retries
            log.warning("webhook_poll_failed", account_id=account_id,
                        error=str(exc), error_type=type(exc).__name__)
        finally:
            with self._cond:
                self._running.discard(account_id)
                if account_id in self._queued:
                    self._submit(account_id)
                self._cond.notify_all()

    def pending(self) -> set[str]:
        """Accounts with a poll queued or running."""
        with self._cond:
            return self._queued | self._running

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no poll is queued or running; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queued and not self._running,
                                       timeout)

    def close(self) -> None:
        """Drop queued polls and stop the pool (a running poll finishes on its own)."""
        with self._cond:
            self._queued.clear()
            executor, self._executor = self._executor, None
            self._cond.notify_all()
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


# --------------------------------------------------------------------------- routes


class WebhookRouter(APIRouter):
    """The webhook routes, with the scheduler their notifications feed."""

    scheduler: PollScheduler


def _empty(status: int) -> Response:
    return Response(status_code=status)


async def _read_body(request: Request) -> bytes | None:
    """The raw body, or None when it exceeds MAX_BODY_BYTES."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def router(services: Services, poller_factory: Callable[[], Poller] | None = None, *,
           secrets: WebhookSecrets | None = None, max_workers: int = 4) -> WebhookRouter:
    """The three receivers over `services` (connections); polls run `poller_factory()`
    (default: an `InboundPoller` from `services`). Secrets default to the environment."""
    keys = secrets if secrets is not None else WebhookSecrets.from_env()
    factory: Callable[[], Poller] = poller_factory or (
        lambda: InboundPoller.from_services(services))
    scheduler = PollScheduler(factory, max_workers)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        scheduler.close()

    r = WebhookRouter(prefix="/webhooks", tags=["webhooks"], lifespan=lifespan)
    r.scheduler = scheduler
    for provider, env in _ENV.items():
        if keys.for_provider(provider) is None:
            log.warning("webhook_secret_not_configured", provider=provider, env=env)
    responses: dict[int | str, dict[str, Any]] = {
        200: {"description": "accepted (empty body); the polls run in the background"},
        401: {"description": "missing or wrong signature (empty body)"},
        413: {"description": "the body is larger than a notification can be"}}

    def accounts_for(provider: str, tenants: list[str]) -> list[str]:
        with services.db.transaction() as s:
            rows = s.execute(select(Connection.account_id, Connection.tenant_id,
                                    Connection.status)
                             .where(Connection.provider == provider,
                                    Connection.tenant_id.in_(tenants))
                             .order_by(Connection.account_id)).all()
        known = {row.tenant_id for row in rows}
        unknown = [t for t in tenants if t not in known]
        if unknown:
            log.info("webhook_tenant_unknown", provider=provider, tenants=unknown)
        for row in rows:
            if row.status != "active":
                log.info("webhook_connection_inactive", provider=provider,
                         account_id=row.account_id, status=row.status)
        return [row.account_id for row in rows if row.status == "active"]

    async def dispatch(provider: str, tenants: list[str]) -> Response:
        if tenants:
            accounts = await run_in_threadpool(accounts_for, provider, tenants)
            queued = [a for a in accounts if scheduler.schedule(a)]
            log.info("webhook_received", provider=provider, tenants=len(tenants),
                     accounts=accounts, queued=queued)
        return _empty(200)

    def rejected(provider: str, signature: str | None) -> Response:
        reason = "bad_signature"
        if keys.for_provider(provider) is None:
            reason = "secret_not_configured"
        elif not signature:
            reason = "missing_signature"
        log.warning("webhook_rejected", provider=provider, reason=reason,
                    env=_ENV[provider] if reason == "secret_not_configured" else None)
        return _empty(401)

    def verified(provider: str, message: bytes, signature: str | None) -> bool:
        secret = keys.for_provider(provider)
        return bool(secret and signature and _signature_ok(secret, message, signature))

    async def signed_json(request: Request, provider: str, header: str,
                          tenants_of: Callable[[Any], list[str] | None]) -> Response:
        """QuickBooks and Xero sign the raw body and send JSON naming the tenants."""
        body = await _read_body(request)
        if body is None:
            return _empty(413)
        signature = request.headers.get(header)
        if not verified(provider, body, signature):
            return rejected(provider, signature)
        try:
            tenants = tenants_of(json.loads(body))
        except ValueError:
            tenants = None
        if tenants is None:  # signed but unreadable: a retry would not help
            log.warning("webhook_unreadable", provider=provider, size=len(body))
            return _empty(200)
        if provider == "xero" and not tenants:
            log.info("xero_intent_to_receive")
        return await dispatch(provider, tenants)

    @r.post("/quickbooks", status_code=200, response_class=Response, responses=responses,
            summary="QuickBooks Online webhooks (intuit-signature)")
    async def quickbooks(request: Request) -> Response:
        return await signed_json(request, "quickbooks", "intuit-signature", quickbooks_realms)

    @r.post("/xero", status_code=200, response_class=Response, responses=responses,
            summary="Xero webhooks (x-xero-signature), intent-to-receive included")
    async def xero(request: Request) -> Response:
        return await signed_json(request, "xero", "x-xero-signature", xero_tenants)

    @r.post("/freshbooks", status_code=200, response_class=Response, responses=responses,
            summary="FreshBooks callbacks (X-FreshBooks-Hmac-SHA256), verification included")
    async def freshbooks(request: Request) -> Response:
        body = await _read_body(request)
        if body is None:
            return _empty(413)
        signature = request.headers.get("x-freshbooks-hmac-sha256")
        form = freshbooks_form(body)
        if form is not None and "verifier" in form:
            configured = keys.freshbooks_verifier
            log.warning(
                "freshbooks_callback_verification", event_name=form.get("name"),
                freshbooks_account=form.get("account_id"), callback_id=form.get("object_id"),
                matches_configured=bool(configured) and hmac.compare_digest(
                    form["verifier"].encode("utf-8"), (configured or "").encode("utf-8")),
                action="activate the callback with the verifier of this request: PUT "
                "/events/account/{account}/events/callbacks/{callback_id} "
                '{"callback": {"verifier": ...}} (or resend it with {"callback": '
                '{"resend": true}}), and set FRESHBOOKS_WEBHOOK_VERIFIER to it')
            return _empty(200)
        if form is None or not verified("freshbooks", freshbooks_message(form), signature):
            return rejected("freshbooks", signature)
        account = form.get("account_id")
        return await dispatch("freshbooks", [account] if account else [])

    return r
