"""Provider webhooks (control/webhooks.py) on SQLite and PostgreSQL, against the simulators.

Signatures are computed here the way each provider (or its SDK) computes them: base64
HMAC-SHA256 of the raw body for QuickBooks and Xero, of Python's `json.dumps` of the form
fields for FreshBooks. Most tests record the polls with a fake poller; the end-to-end test
runs the real InboundPoller through `create_control_app` and finds the change made in the
simulator in the outbox after the webhook.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from control import webhooks
from control.api import create_control_app
from control.webhooks import WebhookRouter, WebhookSecrets
from sandbox.harness import connect_sandbox_account
from schemas.codec import AvroCodec
from service.bootstrap import Services, build_services
from service.config import Settings
from state.crypto import generate_key
from state.models import OutboxMessage

PROVIDERS = ["quickbooks", "xero", "freshbooks"]
SECRETS = WebhookSecrets(quickbooks_verifier=f"qbo-verifier-{uuid.uuid4().hex}",
                         xero_key=f"xero-key-{uuid.uuid4().hex}",
                         freshbooks_verifier=f"fb-verifier-{uuid.uuid4().hex}")
ENV = {"QBO_WEBHOOK_VERIFIER": SECRETS.quickbooks_verifier or "",
       "XERO_WEBHOOK_KEY": SECRETS.xero_key or "",
       "FRESHBOOKS_WEBHOOK_VERIFIER": SECRETS.freshbooks_verifier or ""}
PATH = {p: f"/webhooks/{p}" for p in PROVIDERS}
SIGNATURE_HEADER = {"quickbooks": "intuit-signature", "xero": "x-xero-signature",
                    "freshbooks": "X-FreshBooks-Hmac-SHA256"}


def _tenant(provider: str) -> str:
    if provider == "quickbooks":
        return f"9341{uuid.uuid4().int % 10**12:012d}"
    if provider == "xero":
        return str(uuid.uuid4())
    return f"FB{uuid.uuid4().hex[:10]}"


def _b64_hmac(secret: str, message: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()
                            ).decode()


def _secret(provider: str) -> str:
    secret = {"quickbooks": SECRETS.quickbooks_verifier, "xero": SECRETS.xero_key,
              "freshbooks": SECRETS.freshbooks_verifier}[provider]
    assert secret
    return secret


def _qbo_legacy(*realms: str) -> dict[str, Any]:
    return {"eventNotifications": [{"realmId": realm, "dataChangeEvent": {"entities": [
        {"name": "Customer", "id": "58", "operation": "Update",
         "lastUpdated": "2026-11-20T10:00:00.000Z"}]}} for realm in realms]}


def _qbo_cloudevents(*realms: str) -> list[dict[str, Any]]:
    return [{"specversion": "1.0", "id": str(uuid.uuid4()),
             "source": "intuit.dsnBgbseACLLRZNxo2dfc4evmEJdxde58xeeYcZliOU=",
             "type": "qbo.customer.updated.v1", "datacontenttype": "application/json",
             "time": "2026-11-20T10:00:00.000Z", "intuitentityid": "58",
             "intuitaccountid": realm, "data": {}} for realm in realms]


def _xero_body(*tenants: str) -> dict[str, Any]:
    return {"events": [{"resourceUrl": f"https://api.xero.com/api.xro/2.0/Contacts/{rid}",
                        "resourceId": rid, "eventDateUtc": "2026-11-20T10:00:00.000",
                        "eventType": "UPDATE", "eventCategory": "CONTACT",
                        "tenantId": tenant, "tenantType": "ORGANISATION"}
                       for tenant in tenants for rid in [str(uuid.uuid4())]],
            "firstEventSequence": 1, "lastEventSequence": len(tenants),
            "entropy": "S0m3r4Nd0mt3xt"}


def _fb_form(account: str, name: str = "client.update") -> dict[str, str]:
    return {"name": name, "object_id": "1234567", "account_id": account,
            "business_id": "6543", "identity_id": "1234", "user_id": "1"}


def _fb_sdk_signature(verifier: str, form: dict[str, str]) -> str:
    """As FreshBooks' SDKs document it: the form fields as a dict of strings, dumped with
    Python's json.dumps defaults, HMAC-SHA256 with the verifier, base64."""
    message = json.dumps({k: str(v) for k, v in form.items()}).encode("utf-8")
    return base64.b64encode(hmac.new(verifier.encode("utf-8"), message,
                                     hashlib.sha256).digest()).decode("utf-8")


def _delivery(provider: str, tenant: str, *, secret: str | None = None,
              signed: bool = True) -> tuple[bytes, dict[str, str]]:
    """A notification about `tenant` as the provider sends it (signed with `secret`,
    default the configured one)."""
    key = secret or _secret(provider)
    if provider == "freshbooks":
        form = _fb_form(tenant)
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if signed:
            headers[SIGNATURE_HEADER[provider]] = _fb_sdk_signature(key, form)
        return urlencode(form).encode(), headers
    payload = _qbo_legacy(tenant) if provider == "quickbooks" else _xero_body(tenant)
    return _json_delivery(provider, payload, key, signed)


def _json_delivery(provider: str, payload: Any, key: str, signed: bool = True
                   ) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if signed:
        headers[SIGNATURE_HEADER[provider]] = _b64_hmac(key, body)
    return body, headers


class FakePoller:
    """Records `poll_account` calls; optionally blocks each poll until released."""

    def __init__(self, block_for: float = 0.0) -> None:
        self.calls: list[str] = []
        self.order: list[str] = []  # "started", "finished" (and the test's own marks)
        self.started = threading.Event()
        self.release = threading.Event()
        self._block_for = block_for
        self._lock = threading.Lock()

    def mark(self, what: str) -> None:
        with self._lock:
            self.order.append(what)

    def poll_account(self, account_id: str) -> int:
        with self._lock:
            self.calls.append(account_id)
        self.mark("started")
        self.started.set()
        if self._block_for:
            self.release.wait(self._block_for)
        self.mark("finished")
        return 0


class LogRecorder:
    """Stands in for the module's structlog logger: every line, with its fields."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def _record(self, event: str, **fields: Any) -> None:
        self.lines.append((event, fields))

    info = warning = debug = error = _record

    def text(self) -> str:
        return json.dumps(self.lines, default=str)

    def events(self) -> list[str]:
        return [event for event, _ in self.lines]


@pytest.fixture
def services(monkeypatch: pytest.MonkeyPatch, sandbox_url: str,
             database_url: str) -> Iterator[Services]:
    for name, value in {"SANDBOX_URL": sandbox_url, "DATABASE_URL": database_url,
                        "TOKEN_ENCRYPTION_KEY": generate_key(),
                        "CONTROL_API_TOKEN": "webhook-tests", **ENV}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    built = build_services(Settings.from_env())
    yield built
    built.close()


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> LogRecorder:
    recorder = LogRecorder()
    monkeypatch.setattr(webhooks, "log", recorder)
    return recorder


class Receiver:
    """The webhook router alone (with a fake poller) behind a TestClient."""

    def __init__(self, services: Services, sandbox: str, poller: FakePoller) -> None:
        self.services, self.sandbox, self.poller = services, sandbox, poller
        self.router: WebhookRouter = webhooks.router(services, lambda: poller,
                                                     secrets=SECRETS)
        app = FastAPI()
        app.include_router(self.router)
        self.client = TestClient(app)

    def connect(self, provider: str, tenant: str | None = None) -> tuple[str, str]:
        account = f"acct-{uuid.uuid4().hex[:10]}"
        tenant = tenant or _tenant(provider)
        connect_sandbox_account(self.services.settings.database_url,
                                self.services.settings.token_key, self.sandbox, provider,
                                account, tenant)
        return account, tenant

    def post(self, provider: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        response: httpx.Response = self.client.post(PATH[provider], content=body,
                                                    headers=headers)
        return response

    def settle(self) -> list[str]:
        """Wait for the background polls; the accounts polled, in order."""
        assert self.router.scheduler.wait_idle(15), "background polls did not finish"
        return list(self.poller.calls)


@pytest.fixture
def receiver(services: Services, sandbox_url: str) -> Iterator[Receiver]:
    poller = FakePoller(block_for=5.0)
    r = Receiver(services, sandbox_url, poller)
    with r.client:
        yield r
        poller.release.set()  # never leave a poll sleeping behind the test


@pytest.fixture
def quick(services: Services, sandbox_url: str) -> Iterator[Receiver]:
    r = Receiver(services, sandbox_url, FakePoller())
    with r.client:
        yield r


# --------------------------------------------------------------------------- polls


@pytest.mark.parametrize("provider", PROVIDERS)
def test_signed_notification_polls_the_connected_account(quick: Receiver, provider: str
                                                         ) -> None:
    account, tenant = quick.connect(provider)
    other, _ = quick.connect(provider)  # another tenant of the same provider: not polled
    body, headers = _delivery(provider, tenant)

    r = quick.post(provider, body, headers)

    assert r.status_code == 200
    assert r.content == b""
    assert quick.settle() == [account]
    assert other not in quick.poller.calls


@pytest.mark.parametrize("provider", PROVIDERS)
def test_bad_or_missing_signature_is_refused(quick: Receiver, logs: LogRecorder,
                                             provider: str) -> None:
    _account, tenant = quick.connect(provider)
    body, headers = _delivery(provider, tenant, secret="not-the-secret")
    forged = headers[SIGNATURE_HEADER[provider]]

    bad = quick.post(provider, body, headers)
    unsigned = quick.post(provider, *_delivery(provider, tenant, signed=False))
    garbage = quick.post(provider, body,
                         {**headers, SIGNATURE_HEADER[provider]: "%%not base64%%"})

    for r in (bad, unsigned, garbage):
        assert r.status_code == 401
        assert r.content == b""
    assert quick.settle() == []
    assert logs.events().count("webhook_rejected") == 3
    text = logs.text()
    assert forged not in text
    assert _secret(provider) not in text


@pytest.mark.parametrize("provider", PROVIDERS)
def test_unknown_or_inactive_tenant_is_acknowledged_and_ignored(quick: Receiver,
                                                                provider: str) -> None:
    inactive, inactive_tenant = quick.connect(provider)
    quick.services.connections.set_status(inactive, "reconnect_required", "test")

    for tenant in (_tenant(provider), inactive_tenant):
        r = quick.post(provider, *_delivery(provider, tenant))
        assert r.status_code == 200
        assert r.content == b""
    assert quick.settle() == []


def test_the_signature_is_the_authentication_not_the_bearer_token(quick: Receiver) -> None:
    """The routes answer without `Authorization`, and a bearer token is no substitute."""
    account, tenant = quick.connect("xero")
    body, headers = _delivery("xero", tenant, signed=False)
    r = quick.post("xero", body, {**headers, "Authorization": "Bearer webhook-tests"})
    assert r.status_code == 401
    assert quick.post("xero", *_delivery("xero", tenant)).status_code == 200
    assert quick.settle() == [account]


# --------------------------------------------------------------------------- bodies


def test_quickbooks_cloudevents_and_legacy_bodies(quick: Receiver) -> None:
    first, realm1 = quick.connect("quickbooks")
    second, realm2 = quick.connect("quickbooks")
    key = _secret("quickbooks")

    r = quick.post("quickbooks",
                   *_json_delivery("quickbooks", _qbo_cloudevents(realm1, _tenant("quickbooks")),
                                   key))
    assert (r.status_code, r.content) == (200, b"")
    assert quick.settle() == [first]

    r = quick.post("quickbooks",
                   *_json_delivery("quickbooks", _qbo_legacy(realm2, realm1), key))
    assert (r.status_code, r.content) == (200, b"")
    assert sorted(quick.settle()[1:]) == sorted([first, second])

    # A CloudEvents array signed with another key is refused like any other body.
    r = quick.post("quickbooks",
                   *_json_delivery("quickbooks", _qbo_cloudevents(realm1), "wrong-key"))
    assert r.status_code == 401
    assert len(quick.settle()) == 3


def test_xero_intent_to_receive(quick: Receiver, logs: LogRecorder) -> None:
    """Xero checks a new webhook with signed `events: []` payloads: 200 when the signature
    is right, 401 when it is not, empty body either way."""
    intent = {"events": [], "firstEventSequence": 0, "lastEventSequence": 0,
              "entropy": "LZJKMWQOYXMHSLWJHDUV"}
    good = quick.post("xero", *_json_delivery("xero", intent, _secret("xero")))
    bad = quick.post("xero", *_json_delivery("xero", intent, "a-wrong-webhook-key"))
    unsigned = quick.post("xero", *_json_delivery("xero", intent, "", signed=False))

    assert (good.status_code, good.content) == (200, b"")
    assert (bad.status_code, bad.content) == (401, b"")
    assert (unsigned.status_code, unsigned.content) == (401, b"")
    assert "set-cookie" not in good.headers
    assert "xero_intent_to_receive" in logs.events()
    assert quick.settle() == []


def test_freshbooks_signs_json_dumps_of_the_form_not_the_raw_body(quick: Receiver) -> None:
    account, tenant = quick.connect("freshbooks")
    form = _fb_form(tenant, "invoice.create")
    body = urlencode(form).encode()
    verifier = _secret("freshbooks")
    # The SDK's message: '{"name": "invoice.create", "object_id": "1234567", ...}'
    assert json.dumps(form).startswith('{"name": "invoice.create", "object_id": ')
    headers = {"Content-Type": "application/x-www-form-urlencoded"}

    raw_signed = quick.post("freshbooks", body,
                            {**headers, SIGNATURE_HEADER["freshbooks"]:
                             _b64_hmac(verifier, body)})
    compact = json.dumps(form, separators=(",", ":")).encode()
    compact_signed = quick.post("freshbooks", body,
                                {**headers, SIGNATURE_HEADER["freshbooks"]:
                                 _b64_hmac(verifier, compact)})
    reordered = dict(reversed(list(form.items())))
    reordered_signed = quick.post("freshbooks", body,
                                  {**headers, SIGNATURE_HEADER["freshbooks"]:
                                   _fb_sdk_signature(verifier, reordered)})
    sdk_signed = quick.post("freshbooks", body,
                            {**headers, SIGNATURE_HEADER["freshbooks"]:
                             _fb_sdk_signature(verifier, form)})

    assert raw_signed.status_code == 401
    assert compact_signed.status_code == 401
    assert reordered_signed.status_code == 401  # the received order is what was signed
    assert (sdk_signed.status_code, sdk_signed.content) == (200, b"")
    assert quick.settle() == [account]


def test_freshbooks_verification_request(quick: Receiver, logs: LogRecorder) -> None:
    account, tenant = quick.connect("freshbooks")
    verifier = f"scADVVi5QuKuj5qTjVkbJNYQe{uuid.uuid4().hex[:8]}"
    form = {"name": "callback.verify", "object_id": "2001", "verifier": verifier,
            "account_id": tenant, "user_id": "1"}

    r = quick.post("freshbooks", urlencode(form).encode(),
                   {"Content-Type": "application/x-www-form-urlencoded",
                    SIGNATURE_HEADER["freshbooks"]: _fb_sdk_signature(verifier, form)})

    assert (r.status_code, r.content) == (200, b"")
    assert quick.settle() == []  # a verification is not a change
    [(_event, fields)] = [line for line in logs.lines
                         if line[0] == "freshbooks_callback_verification"]
    assert fields["callback_id"] == "2001"
    assert fields["freshbooks_account"] == tenant
    assert fields["matches_configured"] is False
    assert "FRESHBOOKS_WEBHOOK_VERIFIER" in fields["action"]
    assert verifier not in logs.text()
    assert account not in quick.poller.calls


# --------------------------------------------------------------------------- scheduling


def test_ack_returns_before_a_slow_poll_finishes(receiver: Receiver) -> None:
    """The poller takes 5 s; the answer comes first (ordering, not a timing threshold)."""
    account, tenant = receiver.connect("quickbooks")

    r = receiver.post("quickbooks", *_delivery("quickbooks", tenant))
    receiver.poller.mark("answered")

    assert (r.status_code, r.content) == (200, b"")
    assert receiver.poller.started.wait(10), "the poll was never started"
    receiver.poller.release.set()
    assert receiver.settle() == [account]
    order = receiver.poller.order
    assert order.index("answered") < order.index("finished"), order


def test_a_queued_poll_absorbs_new_notifications(receiver: Receiver) -> None:
    account, tenant = receiver.connect("xero")
    other, other_tenant = receiver.connect("xero")

    receiver.post("xero", *_delivery("xero", tenant))
    assert receiver.poller.started.wait(10)  # the first poll is running (and blocked)
    for _ in range(4):  # one more poll is queued; the rest are absorbed by it
        assert receiver.post("xero", *_delivery("xero", tenant)).status_code == 200
    assert receiver.router.scheduler.pending() == {account}
    receiver.post("xero", *_delivery("xero", other_tenant))  # other accounts are not held
    receiver.poller.release.set()

    calls = receiver.settle()
    assert calls.count(account) == 2
    assert calls.count(other) == 1


# --------------------------------------------------------------------------- end to end


def _create_customer_in_books(sandbox: str, provider: str, tenant: str, name: str) -> str:
    """A person adds a customer in the accounting system (its API, a grant of its own)."""
    grant = httpx.post(f"{sandbox}/{provider}/_sandbox/grants", json={"tenant": tenant},
                       timeout=10)
    assert grant.status_code == 200, grant.text
    headers = {"Authorization": f"Bearer {grant.json()['access_token']}",
               "Accept": "application/json"}
    if provider == "quickbooks":
        r = httpx.post(f"{sandbox}/quickbooks/v3/company/{tenant}/customer",
                       params={"minorversion": "75"}, json={"DisplayName": name},
                       headers=headers, timeout=10)
        assert r.status_code == 200, r.text
        return str(r.json()["Customer"]["Id"])
    if provider == "xero":
        r = httpx.put(f"{sandbox}/xero/api.xro/2.0/Contacts", json={"Contacts": [{"Name": name}]},
                      headers={**headers, "xero-tenant-id": tenant}, timeout=10)
        assert r.status_code == 200, r.text
        return str(r.json()["Contacts"][0]["ContactID"])
    r = httpx.post(f"{sandbox}/freshbooks/accounting/account/{tenant}/users/clients",
                   json={"client": {"organization": name}}, headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    return str(r.json()["response"]["result"]["client"]["id"])


def _inbound_events(services: Services, account: str) -> list[dict[str, Any]]:
    codec = AvroCodec()
    with services.db.transaction() as s:
        rows = list(s.execute(select(OutboxMessage).where(
            OutboxMessage.account_id == account,
            OutboxMessage.topic_kind == "inbound").order_by(OutboxMessage.id)).scalars())
    return [codec.decode(row.value).value for row in rows]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_webhook_to_outbox_end_to_end(services: Services, sandbox_url: str,
                                      provider: str) -> None:
    """The control API as served (secrets from the environment, the real InboundPoller):
    a customer added in the simulator is in the outbox after the provider's webhook."""
    account = f"acct-{uuid.uuid4().hex[:10]}"
    tenant = _tenant(provider)
    connect_sandbox_account(services.settings.database_url, services.settings.token_key,
                            sandbox_url, provider, account, tenant,
                            connected_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    name = f"Webhook Plumbing {uuid.uuid4().hex[:6]}"
    customer = _create_customer_in_books(sandbox_url, provider, tenant, name)
    assert _inbound_events(services, account) == []  # nothing polls but the webhook

    with TestClient(create_control_app(services)) as api:
        operation = api.get("/openapi.json").json()["paths"][PATH[provider]]["post"]
        assert "security" not in operation  # not behind the control API's bearer token
        refused = api.post(PATH[provider], content=_delivery(provider, tenant,
                                                             signed=False)[0])
        assert (refused.status_code, refused.content) == (401, b"")
        body, headers = _delivery(provider, tenant)
        r = api.post(PATH[provider], content=body, headers=headers)
        assert (r.status_code, r.content) == (200, b"")

        deadline = time.monotonic() + 30
        found: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not found:
            found = [e for e in _inbound_events(services, account)
                     if e["entity_type"] == "customer" and e["provider_record_id"] == customer]
            if not found:
                time.sleep(0.1)
    assert found, f"no inbound event for {provider} customer {customer} after the webhook"
    event = found[0]
    assert event["account_id"] == account
    assert event["provider"] == provider
    assert event["details"]["display_name"] == name
