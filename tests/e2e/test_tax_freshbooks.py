"""Sales tax on FreshBooks, end to end on the real broker: one business per region.

A US business (the owner created its state and city sales taxes in FreshBooks) and a
Canadian one (GST, HST, PST, QST: sandbox/freshbooks/README.md, "Regions") run a week of
invoices through a worker process: taxable and untaxed lines, tax-exclusive and
tax-inclusive prices, two rates on one invoice, a compound rate, and a rate changed
mid-week -- in the US in both BlueClerk and FreshBooks (the invoices after the change are
written at the new percent), in Canada only in BlueClerk (the invoice is refused, naming
the line and both figures, and nothing is written).

Every figure below is worked out by hand from the two published rules (BlueClerk: each
line's tax rounded half up to the cent, exclusive amount x r / 100, inclusive
amount x r / (100 + r); FreshBooks: each line's tax round2(net x percent / 100) on the
net it is sent) -- not by the adapter's code. The books' tax is FreshBooks' total less
its lines' amounts.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from producers.kafka import make_producer
from sandbox.harness import StatusReader, WorkerProcess, connect_sandbox_account
from sandbox.scenario import EventFactory, publish
from schemas.codec import AvroCodec
from schemas.records import ChangeEvent, Customer, Invoice, InvoiceLine, Item
from schemas.status import FINAL_STATUSES, SyncStatus, SyncStatusEvent
from service.config import Topics
from state.crypto import generate_key
from state.db import migrate

pytestmark = pytest.mark.e2e

D = Decimal
MONDAY = dt.date(2026, 11, 23)


@dataclass(frozen=True)
class Rate:
    id: str
    name: str
    percent: str
    compound: bool = False


@dataclass(frozen=True)
class Row:
    """One BlueClerk line: qty x price = amount (inclusive: tax included), its rate, and
    the tax BlueClerk computed for it; `fb_tax` is the FreshBooks tax the line must carry
    in the books (name, percent) or None for an untaxed line."""

    qty: str
    price: str
    amount: str
    rate: Rate | None
    tax: str
    fb_tax: tuple[str, str] | None


@dataclass(frozen=True)
class Case:
    number: str
    day: int  # 0 = Monday
    mode: str
    rows: tuple[Row, ...]
    subtotal: str
    tax: str
    total: str
    # None: synced, and the books hold `tax` and `total`. Else: failed, the status names
    # the line and both figures (every string here is in the message).
    refused: tuple[str, ...] | None = None


# ---- the US business (USD): taxes the owner created in FreshBooks ----------------------

US_TAXES = [{"name": "Austin Sales Tax", "amount": "8.25"},
            {"name": "Texas Sales Tax", "amount": "6.25"},
            {"name": "Chicago Sales Tax", "amount": "10.25"}]
ATX = Rate("us-atx", "Austin Sales Tax", "8.25")
TEX = Rate("us-tx", "Texas Sales Tax", "6.25")
NYC = Rate("us-nyc", "NYC Sales Tax", "8.875")   # not defined in FreshBooks: name + percent
CHI = Rate("us-chi", "Chicago Sales Tax", "10.25")
CHI_THU = Rate("us-chi", "Chicago Sales Tax", "10.5")  # raised Thursday, in both systems

US_WEEK = (
    # Mon: two rates and an untaxed line. 125.00 x 8.25% = 10.3125 -> 10.31;
    # 80.00 x 6.25% = 5.00; 15.00 untaxed. Tax 15.31, total 235.31.
    Case("US-101", 0, "exclusive", (
        Row("2", "62.50", "125.00", ATX, "10.31", ("Austin Sales Tax", "8.25")),
        Row("1", "80.00", "80.00", TEX, "5.00", ("Texas Sales Tax", "6.25")),
        Row("1", "15.00", "15.00", None, "0", None)),
        "220.00", "15.31", "235.31"),
    # Tue, inclusive at 8.25%: 108.25 x 8.25/108.25 = 8.25 (net 100.00; FreshBooks
    # 100.00 x 8.25% = 8.25); 54.13 x 8.25/108.25 = 4.12538 -> 4.13 (net 50.00;
    # FreshBooks 50.00 x 8.25% = 4.125 -> 4.13). Tax 12.38, total 162.38.
    Case("US-102", 1, "inclusive", (
        Row("1", "108.25", "108.25", ATX, "8.25", ("Austin Sales Tax", "8.25")),
        Row("1", "54.13", "54.13", ATX, "4.13", ("Austin Sales Tax", "8.25"))),
        "150.00", "12.38", "162.38"),
    # Wed, a rate FreshBooks does not define, carried by name and percent:
    # 240.00 x 8.875% = 21.30. Total 261.30.
    Case("US-103", 2, "exclusive", (
        Row("1", "240.00", "240.00", NYC, "21.30", ("NYC Sales Tax", "8.875")),),
        "240.00", "21.30", "261.30"),
    # Wed, Chicago at 10.25%: 100.00 -> 10.25. Total 110.25.
    Case("US-104", 2, "exclusive", (
        Row("1", "100.00", "100.00", CHI, "10.25", ("Chicago Sales Tax", "10.25")),),
        "100.00", "10.25", "110.25"),
    # Thu, Chicago now 10.5% in BlueClerk and in FreshBooks: 100.00 -> 10.50; 2 x 20.00
    # untaxed. Tax 10.50, total 150.50.
    Case("US-105", 3, "exclusive", (
        Row("1", "100.00", "100.00", CHI_THU, "10.50", ("Chicago Sales Tax", "10.5")),
        Row("2", "20.00", "40.00", None, "0", None)),
        "140.00", "10.50", "150.50"),
    # Fri: 3 x 33.33 = 99.99 x 8.25% = 8.249175 -> 8.25. Total 108.24.
    Case("US-106", 4, "exclusive", (
        Row("3", "33.33", "99.99", ATX, "8.25", ("Austin Sales Tax", "8.25")),),
        "99.99", "8.25", "108.24"),
)

# ---- the Canadian business (CAD): the region's taxes (GST 5, HST ON 13, HST NB 15,
# PST BC 7, QST 9.975 not compound) ---------------------------------------------------------

GST = Rate("ca-gst", "GST", "5")
PST = Rate("ca-pst", "PST", "7")
HST = Rate("ca-hst", "HST", "13")
HST15 = Rate("ca-hst15", "HST NS", "15")
HST_THU = Rate("ca-hst15", "HST NS", "14")  # changed Thursday in BlueClerk only
QSTC = Rate("ca-qst", "QST", "9.975", compound=True)

CA_WEEK = (
    # Mon: GST and PST lines on one invoice and an untaxed line. 90.00 x 5% = 4.50;
    # 120.00 x 7% = 8.40. Tax 12.90, total 252.90.
    Case("CA-201", 0, "exclusive", (
        Row("2", "45.00", "90.00", GST, "4.50", ("GST", "5")),
        Row("1", "120.00", "120.00", PST, "8.40", ("PST BC", "7")),
        Row("1", "30.00", "30.00", None, "0", None)),
        "240.00", "12.90", "252.90"),
    # Mon: HST NS 15%, FreshBooks' HST NB 15%: 200.00 -> 30.00. Total 230.00.
    Case("CA-202", 0, "exclusive", (
        Row("1", "200.00", "200.00", HST15, "30.00", ("HST NB", "15")),),
        "200.00", "30.00", "230.00"),
    # Tue, inclusive HST 13%: 10.04 x 13/113 = 1.15504 -> 1.16 (FreshBooks: 8.88 gives
    # 1.1544 -> 1.15, 8.89 gives 1.1557 -> 1.16, so the line goes at 8.89 and a Rounding
    # line of -0.01 closes the total); 3 x 33.90 = 101.70 x 13/113 = 11.70 (net 90.00,
    # 90.00 x 13% = 11.70); 25.00 untaxed. Tax 12.86, total 136.74.
    Case("CA-203", 1, "inclusive", (
        Row("1", "10.04", "10.04", HST, "1.16", ("HST ON", "13")),
        Row("3", "33.90", "101.70", HST, "11.70", ("HST ON", "13")),
        Row("1", "25.00", "25.00", None, "0", None)),
        "123.88", "12.86", "136.74"),
    # Wed, a compound rate (alone on its line, as BlueClerk lines carry one rate) and GST:
    # 100.00 x 9.975% = 9.975 -> 9.98; 49.99 x 5% = 2.4995 -> 2.50. Tax 12.48, total
    # 162.47.
    Case("CA-204", 2, "exclusive", (
        Row("1", "100.00", "100.00", QSTC, "9.98", ("QST", "9.975")),
        Row("1", "49.99", "49.99", GST, "2.50", ("GST", "5"))),
        "149.99", "12.48", "162.47"),
    # Thu, HST NS is 14% in BlueClerk, FreshBooks' HST NB still 15%: 50.00 x 5% = 2.50;
    # 200.00 x 14% = 28.00 but FreshBooks 200.00 x 15% = 30.00. BlueClerk total 280.50,
    # FreshBooks would have 282.50: refused, nothing written.
    Case("CA-205", 3, "exclusive", (
        Row("1", "50.00", "50.00", GST, "2.50", ("GST", "5")),
        Row("1", "200.00", "200.00", HST_THU, "28.00", ("HST NB", "15"))),
        "250.00", "30.50", "280.50",
        refused=("invoice CA-205: line 2", "BlueClerk tax 28.00 CAD at HST NS 14%",
                 "FreshBooks would compute 30.00 CAD at HST NB 15%", "total 280.50 CAD",
                 "total 282.50 CAD")),
    # Fri: 3 x 19.99 = 59.97 x 5% = 2.9985 -> 3.00; 7 x 12.49 = 87.43 x 7% = 6.1201 ->
    # 6.12. Tax 9.12, total 156.52.
    Case("CA-206", 4, "exclusive", (
        Row("3", "19.99", "59.97", GST, "3.00", ("GST", "5")),
        Row("7", "12.49", "87.43", PST, "6.12", ("PST BC", "7"))),
        "147.40", "9.12", "156.52"),
)


def _invoice(case: Case, customer_id: str, item_id: str, currency: str) -> Invoice:
    lines = tuple(
        InvoiceLine(item_id, f"Service {n}", D(r.qty), D(r.price), D(0),
                    D(r.rate.percent) if r.rate else D(0), D(r.amount),
                    tax_rate_id=r.rate.id if r.rate else None,
                    tax_rate_name=r.rate.name if r.rate else None,
                    tax_compound=r.rate.compound if r.rate else False)
        for n, r in enumerate(case.rows, start=1))
    issued = MONDAY + dt.timedelta(days=case.day)
    return Invoice(f"inv-{case.number}", customer_id, case.number, issued,
                   issued + dt.timedelta(days=30), currency, case.mode,  # type: ignore[arg-type]
                   lines, D(case.subtotal), D(case.tax), D(case.total))


def _events(account: str, currency: str, cases: tuple[Case, ...]
            ) -> tuple[list[ChangeEvent], list[ChangeEvent]]:
    """(Monday to Wednesday with the customer and item, Thursday and Friday)."""
    factory = EventFactory(account)
    customer = Customer(f"cust-{account}", "Harbour Plumbing", company_name="Harbour Plumbing",
                        email=f"ap+{account}@harbour.example", currency=currency)
    item = Item(f"item-{account}", "Service call", unit_price=D("45.00"), currency=currency,
                taxable=True)
    early = [factory.event(customer), factory.event(item)]
    late: list[ChangeEvent] = []
    for case in cases:
        (early if case.day < 3 else late).append(
            factory.event(_invoice(case, customer.id, item.id, currency)))
    return early, late


def _wait_final(reader: StatusReader, events: list[ChangeEvent], timeout: float) -> None:
    wanted = {e.event_id for e in events}

    def done(statuses: list[SyncStatusEvent]) -> bool:
        final = {s.source_event_id for s in statuses if s.status in FINAL_STATUSES}
        return wanted <= final

    assert reader.wait_for(done, timeout=timeout), "not every event reached a final status"


def _check(sandbox_url: str, tenant: str, cases: tuple[Case, ...],
           final: dict[str, SyncStatusEvent]) -> list[str]:
    books: dict[str, Any] = httpx.get(f"{sandbox_url}/freshbooks/_sandbox/books/{tenant}",
                                      timeout=10).json()
    by_id = {str(i["id"]): i for i in books["invoices"]}
    by_number = {i["invoice_number"]: i for i in books["invoices"]}
    problems: list[str] = []
    for case in cases:
        status = final[f"inv-{case.number}"]
        if case.refused is not None:
            text = status.message or ""
            if status.status != SyncStatus.FAILED or status.error_code is None \
                    or status.error_code.value != "total_mismatch":
                problems.append(f"{case.number}: {status.status} {status.error_code} {text}")
            problems += [f"{case.number}: {want!r} not in {text!r}"
                         for want in case.refused if want not in text]
            if case.number in by_number:
                problems.append(f"{case.number}: written although refused")
            continue
        if status.status != SyncStatus.SYNCED:
            problems.append(f"{case.number}: {status.status} {status.message}")
            continue
        row = by_id[str(status.provider_record_id)]
        total = D(row["amount"]["amount"])
        tax = total - sum((D(li["amount"]["amount"]) for li in row["lines"]), D(0))
        if (tax, total) != (D(case.tax), D(case.total)):
            problems.append(f"{case.number}: books tax {tax} total {total}, "
                            f"BlueClerk {case.tax} {case.total}")
        carried = [(li["taxName1"], li["taxAmount1"]) if li["taxName1"] else None
                   for li in row["lines"][:len(case.rows)]]
        if carried != [r.fb_tax for r in case.rows]:
            problems.append(f"{case.number}: lines carry {carried}")
    return problems


def test_a_week_of_sales_tax_on_freshbooks_us_and_ca(
        kafka_bootstrap: str, sandbox_url: str, topics: Topics, tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'tax.db'}"
    migrate(db_url)
    key = generate_key()
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "DATABASE_URL": db_url,
           "TOKEN_ENCRYPTION_KEY": key, "SANDBOX_URL": sandbox_url,
           "TOPIC_PREFIX": topics.prefix, "CONSUMER_GROUP": "sync-tax-fb",
           "LOG_LEVEL": "warning", "FRESHBOOKS_RATE_PER_MINUTE": "100000"}
    run = uuid.uuid4().hex[:6].upper()
    fb = f"{sandbox_url}/freshbooks"
    tenants = {"US": (f"acct-{run}-fb-us", f"USTAX{run}", "USD", US_WEEK),
               "CA": (f"acct-{run}-fb-ca", f"CATAX{run}", "CAD", CA_WEEK)}
    for region, (account, tenant, _, _) in tenants.items():
        connect_sandbox_account(db_url, key, sandbox_url, "freshbooks", account, tenant)
        seed: dict[str, Any] = {"Region": region}
        if region == "US":
            seed["taxes"] = US_TAXES  # the owner's own state and city sales taxes
        httpx.post(f"{fb}/_sandbox/seed/{tenant}", json=seed, timeout=10).raise_for_status()

    early: list[ChangeEvent] = []
    late: list[ChangeEvent] = []
    for account, _, currency, cases in tenants.values():
        first, second = _events(account, currency, cases)
        early += first
        late += second
    producer = make_producer(kafka_bootstrap)
    reader = StatusReader(kafka_bootstrap, topics.status)
    started = time.monotonic()
    with WorkerProcess(env, tmp_path / "worker.log") as worker:
        publish(producer, AvroCodec(), topics, early)
        _wait_final(reader, early, timeout=60)
        # Thursday: Chicago's rate goes to 10.5%; the US owner changes it in FreshBooks
        # too (BlueClerk's events below carry 10.5%). HST NS is changed in BlueClerk only.
        us_tenant = tenants["US"][1]
        token = httpx.post(f"{fb}/_sandbox/grants", json={"tenant": us_tenant},
                           timeout=10).json()["access_token"]
        taxes = httpx.get(f"{fb}/_sandbox/books/{us_tenant}", timeout=10).json()["taxes"]
        chicago = next(t for t in taxes if t["name"] == "Chicago Sales Tax")
        httpx.put(f"{fb}/accounting/account/{us_tenant}/taxes/taxes/{chicago['id']}",
                  json={"tax": {"amount": "10.5"}},
                  headers={"Authorization": f"Bearer {token}"}, timeout=10).raise_for_status()
        publish(producer, AvroCodec(), topics, late)
        _wait_final(reader, late, timeout=60)
        assert worker.terminate() == 0
    reader.close()
    elapsed = time.monotonic() - started

    final: dict[str, SyncStatusEvent] = {}
    for s in reader.statuses:
        if s.status in FINAL_STATUSES:
            final[s.entity_id] = s
    problems: list[str] = []
    for _, tenant, _, cases in tenants.values():
        problems += _check(sandbox_url, tenant, cases, final)
    assert problems == [], "\n".join(problems)
    print(f"tax week: {len(early) + len(late)} events settled in {elapsed:.1f} s")
