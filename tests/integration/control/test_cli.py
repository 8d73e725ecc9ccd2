"""The operator CLI over the same service functions: connect, wizard, sync, status, replay."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import select

from control.cli import main
from control.oauth_flow import sandbox_consent
from sandbox.scenario import EventFactory
from schemas.codec import AvroCodec
from schemas.events import SCHEMA_BY_ENTITY, event_to_avro
from schemas.records import ChangeEvent, Customer, Item
from service.bootstrap import Services, build_services
from service.config import Settings, Topics
from state import repository as repo
from state.crypto import generate_key
from state.models import DeadLetter, EntityLink, OutboxMessage

REDIRECT = "http://127.0.0.1:8700/oauth/callback"


@pytest.fixture
def services(monkeypatch: pytest.MonkeyPatch, sandbox_url: str, sqlite_url: str,
             kafka_bootstrap: str, topics: Topics) -> Iterator[Services]:
    for name, value in {"SANDBOX_URL": sandbox_url, "DATABASE_URL": sqlite_url,
                        "TOKEN_ENCRYPTION_KEY": generate_key(),
                        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
                        "TOPIC_PREFIX": topics.prefix, "OAUTH_REDIRECT_URI": REDIRECT,
                        "LOG_LEVEL": "warning"}.items():
        monkeypatch.setenv(name, value)
    built = build_services(Settings.from_env())
    yield built
    built.close()


class Cli:
    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def raw(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main(list(argv))
        out, err = self.capsys.readouterr()
        return code, out, err

    def __call__(self, *argv: str) -> Any:
        code, out, err = self.raw(*argv)
        assert code == 0, f"{argv}: {err}"
        return json.loads(out)

    def fails(self, code: str, *argv: str) -> str:
        exit_code, _out, err = self.raw(*argv)
        assert exit_code == 2, err
        assert err.startswith(f"error: {code}: "), err
        return err


def _payload(event: ChangeEvent) -> bytes:
    return AvroCodec().encode(SCHEMA_BY_ENTITY[event.entity_type], event_to_avro(event))


@pytest.mark.parametrize("provider,tenant,seed", [
    ("quickbooks", "934100000000777",
     {"Customer": [{"DisplayName": "Jon Smith", "GivenName": "Jon", "FamilyName": "Smith",
                    "PrimaryEmailAddr": {"Address": "jsmith@example.com"}},
                   {"DisplayName": "Hillside Builders LLC",
                    "CompanyName": "Hillside Builders LLC"}],
      "Item": [{"Name": "Service Call", "Sku": "SVC-1", "Type": "Service", "UnitPrice": 89,
                "IncomeAccountRef": {"value": "1"}}]}),
    ("freshbooks", "FBCLI01",
     {"clients": [{"fname": "Jon", "lname": "Smith", "email": "jsmith@example.com"},
                  {"organization": "Hillside Builders LLC"}],
      "items": [{"name": "Service Call", "sku": "SVC-1",
                 "unit_cost": {"amount": "89.00", "code": "USD"}}]}),
])
def test_cli_covers_the_control_plane(capsys: pytest.CaptureFixture[str], services: Services,
                                      sandbox_url: str, provider: str, tenant: str,
                                      seed: dict[str, Any]) -> None:
    cli = Cli(capsys)
    account = f"acct-cli-{uuid.uuid4().hex[:8]}"
    tenant = f"{tenant}{uuid.uuid4().int % 1000:03d}"

    # connect prints the authorization URL; the consent happens in a browser (here: headless)
    code, out, _err = cli.raw("connect", "--account", account, "--provider", provider)
    assert code == 0
    url = out.strip().splitlines()[0]
    assert url.startswith(f"{sandbox_url}/{provider}/") and "state=" in url
    redirect = sandbox_consent(url, tenant=tenant)
    cli.fails("invalid_state", "callback", "--code", redirect["code"], "--state", "forged")
    connected = cli("callback", "--url", f"{REDIRECT}?{urlencode(redirect)}")
    assert connected["tenant_id"] == tenant and connected["status"] == "active"
    cli.fails("already_connected", "connect", "--account", account, "--provider", "xero")

    r = httpx.post(f"{sandbox_url}/{provider}/_sandbox/seed/{tenant}", json=seed, timeout=10)
    assert r.status_code == 200, r.text
    factory = EventFactory(account, dt.datetime.now(dt.UTC) - dt.timedelta(days=3))
    existing = [factory.event(Customer(id="cust-js", display_name="John Smith",
                                       email="jsmith@example.com")),
                factory.event(Item(id="item-svc", name="Service Call", sku="SVC-1",
                                   unit_price=Decimal("85.00"))),
                factory.event(Item(id="item-gutter", name="Gutter Guard",
                                   unit_price=Decimal("30.00")))]
    with services.db.transaction() as s:
        for e in existing:
            repo.save_snapshot(s, account, e.entity_type.value, e.entity_id, e.entity_version,
                               _payload(e), e.record_created_at)

    # step 1
    assert cli("wizard", "start", "--account", account)["next_step"] == "customers"
    customers = {c["display_name"]: c for c in
                 cli("wizard", "customers", "--account", account)["customers"]}
    smith = customers["Jon Smith"]
    assert smith["duplicates"][0]["blueclerk_id"] == "cust-js"
    hillside = customers["Hillside Builders LLC"]["provider_id"]
    done = cli("wizard", "import-customers", "--account", account,
               "--import", f"{hillside}:Business", "--link", f"{smith['provider_id']}=cust-js")
    assert done["imported"] == [{"provider_id": hillside, "customer_type": "Business",
                                 "blueclerk_id": f"imp-{provider}-{hillside}"}]
    assert done["linked"][0]["blueclerk_id"] == "cust-js"
    cli.fails("invalid_customer_type", "wizard", "import-customers", "--account", account,
              "--import", f"{hillside}:Martian")

    # step 2: skipped, wizard closed and re-run, then done
    assert cli("wizard", "skip", "--account", account, "--step", "items")["next_step"] \
        == "accounts"
    assert cli("wizard", "close", "--account", account)["closed"] is True
    rerun = cli("wizard", "start", "--account", account)
    assert rerun["steps"]["customers"] == "done" and rerun["runs"] == 2
    items = {i["name"]: i for i in cli("wizard", "items", "--account", account)["items"]}
    svc = items["Service Call"]["provider_id"]
    assert items["Service Call"]["matches"][0]["blueclerk_id"] == "item-svc"
    linked = cli("wizard", "import-items", "--account", account, "--link", f"{svc}=item-svc")
    assert linked["linked"][0]["blueclerk_id"] == "item-svc"

    # step 3
    accounts = cli("wizard", "accounts", "--account", account)
    if provider == "freshbooks":  # items without an income account: mappings do not apply
        assert accounts["mappings_apply"] is False and accounts["unmapped"] == []
        message = cli.fails("mapping_not_applicable", "wizard", "map-all", "--account",
                            account, "--income-account", "1")
        assert "FreshBooks items have no income account; mappings are not used" in message
        assert f"blueclerk-sync wizard skip --account {account} --step accounts" in message
        cli.fails("mapping_not_applicable", "wizard", "map", "--account", account, "--item",
                  "item-gutter", "--income-account", "1")
        assert cli("wizard", "skip", "--account", account, "--step", "accounts"
                   )["steps"]["accounts"] == "skipped"
    else:
        first, second = (a["id"] for a in accounts["income_accounts"][:2])
        assert "item-gutter" in {u["item_id"] for u in accounts["unmapped"]}
        assert "item-gutter" in cli("wizard", "map-all", "--account", account,
                                    "--income-account", first)["mapped"]
        cli("wizard", "map", "--account", account, "--item", "item-gutter",
            "--income-account", second)
        cli.fails("unknown_income_account", "wizard", "map", "--account", account, "--item",
                  "item-gutter", "--income-account", "nope")

    # a dead letter replayed once its cause is fixed
    late = EventFactory(account).customer("cust-dl", "Dead Letter Replay Customer")
    with services.db.transaction() as s:
        repo.add_dead_letter(s, account_id=account, entity_type="customer",
                             entity_id="cust-dl", topic="t", partition=0, offset=7,
                             error_code="validation_failed", reason="rejected earlier",
                             payload=_payload(late))
        repo.mark_processed(s, late.event_id, account, "failed")
        dl_id = s.execute(select(DeadLetter.id).where(DeadLetter.account_id == account)
                          ).scalar_one()
    replayed = cli("replay-dead-letters", "--record", str(dl_id))
    assert replayed["replayed"] == 1 and replayed["results"][0]["outcome"] == "synced"
    assert cli("replay-dead-letters", "--account", account)["replayed"] == 0
    with services.db.transaction() as s:
        row = s.get(DeadLetter, dl_id)
        assert row is not None and row.replayed_at is not None
    cli.fails("unknown_record", "replay-dead-letters", "--record", str(dl_id))

    # step 4, step 5, Sync Now, status
    settings = cli("wizard", "settings", "--account", account, "--auto-sync", "off",
                   "--sync-invoices", "off")
    assert settings["auto_sync"] is False and settings["sync_invoices"] is False
    assert cli("wizard", "settings", "--account", account)["auto_sync"] is False
    summary = cli("wizard", "summary", "--account", account)
    assert summary["progress"]["complete"] is True
    if provider != "freshbooks":
        assert summary["unmapped"] == []
    assert summary["customers"]["linked"] == [{"blueclerk_id": "cust-js",
                                               "provider_id": smith["provider_id"]}]
    now = cli("sync-now", "--account", account)
    assert now["auto_sync"] is False and now["still_waiting"] == 0
    status = cli("status", "--account", account)
    assert status["health"] == "healthy" and status["counts_by_status"]["synced"] >= 1
    assert status["dead_letters_pending_replay"] == 0
    with services.db.transaction() as s:
        inbound = s.execute(select(OutboxMessage).where(
            OutboxMessage.account_id == account, OutboxMessage.topic_kind == "inbound")
        ).scalars().all()
        assert len(inbound) == 3 and all(m.published_at is not None for m in inbound)

    # disconnect: tokens revoked, links kept, later calls refused with what to do
    gone = cli("disconnect", "--account", account)
    assert gone["tokens_revoked"] is True and gone["links_kept"] == 4  # 3 + the replayed one
    assert cli("status", "--account", account)["health"] == "disconnected"
    cli.fails("not_connected", "wizard", "customers", "--account", account)
    with services.db.transaction() as s:
        assert len(s.execute(select(EntityLink).where(EntityLink.account_id == account)
                             ).scalars().all()) == 4


def test_denied_and_replayed_callbacks(capsys: pytest.CaptureFixture[str],
                                       services: Services) -> None:
    """The CLI reports a denied consent and a replayed code with what to do."""
    cli = Cli(capsys)
    account = f"acct-cli-{uuid.uuid4().hex[:8]}"
    _, out, _ = cli.raw("connect", "--account", account, "--provider", "xero")
    denied = sandbox_consent(out.splitlines()[0], approve=False, tenant=str(uuid.uuid4()))
    assert "the user declined" in cli.fails("access_denied", "callback", "--url",
                                            f"{REDIRECT}?{urlencode(denied)}")
    _, out, _ = cli.raw("connect", "--account", account, "--provider", "xero")
    approved = sandbox_consent(out.splitlines()[0], tenant=str(uuid.uuid4()))
    cli("callback", "--url", f"{REDIRECT}?{urlencode(approved)}")
    _, out, _ = cli.raw("connect", "--account", account, "--provider", "xero")
    fresh_state = dict(p.split("=", 1) for p in out.splitlines()[0].split("?", 1)[1]
                       .split("&"))["state"]
    message = cli.fails("invalid_grant", "callback", "--code", approved["code"], "--state",
                        fresh_state)
    assert "already used or expired; start again" in message
