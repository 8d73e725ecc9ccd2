"""schemas.records.to_plain equals dataclasses.asdict on every record, so the payload
hashes stored with entity links (consumers/handlers.py payload_hash) are unchanged by
using it: a changed hash would make every linked record look edited after a deploy."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import asdict
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.handlers import payload_hash
from schemas.records import Customer, Invoice, InvoiceLine, Item, Payment, Record, to_plain

records = st.one_of(st.from_type(Customer), st.from_type(Item), st.from_type(Invoice),
                    st.from_type(Payment))


@settings(max_examples=300, deadline=None)
@given(records)
def test_to_plain_equals_asdict(record: Record) -> None:
    plain = to_plain(record)
    expected = asdict(record)
    assert plain == expected
    # Same types all the way down (a tuple stays a tuple, a Decimal a Decimal), so
    # json.dumps(default=str) renders the same text.
    assert json.dumps(plain, sort_keys=True, default=str) == json.dumps(
        expected, sort_keys=True, default=str)


@settings(max_examples=100, deadline=None)
@given(records, st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2))
def test_payload_hash_is_the_asdict_hash(record: Record, extra: dict[str, Any]) -> None:
    body = {"provider": "xero", "record": asdict(record), "extra": extra}
    before = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
    assert payload_hash("xero", record, extra) == before


def test_an_invoice_becomes_dicts_all_the_way_down() -> None:
    line = InvoiceLine(item_id="i1", description="Labour", quantity=Decimal("2"),
                       unit_price=Decimal("45.50"), amount=Decimal("91.00"))
    invoice = Invoice(id="v1", customer_id="c1", number="1001", issue_date=dt.date(2026, 1, 2),
                      due_date=None, currency="USD", tax_mode="none", lines=(line, line),
                      subtotal=Decimal("182.00"), tax_total=Decimal("0"), total=Decimal("182.00"))
    plain = to_plain(invoice)
    assert isinstance(plain, dict)
    assert plain["lines"] == ({**{f: getattr(line, f) for f in (
        "item_id", "description", "quantity", "unit_price", "discount_percent",
        "tax_rate_percent", "amount", "tax_rate_id", "tax_rate_name", "tax_compound")}},) * 2
    assert plain["issue_date"] == dt.date(2026, 1, 2) and plain["total"] == Decimal("182.00")
