"""Provider rows -> canonical snapshots (providers/*/canonical.py), on recorded shapes:
the FreshBooks SDK's fixtures, the examples of Xero's OpenAPI document, and QuickBooks
rows written with the XSDs' element names (checked against them here). Also what our
own writes leave in the books (written_*) hashes like the row the provider then holds."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from providers.freshbooks import canonical as fb
from providers.quickbooks import canonical as qbo
from providers.xero import canonical as xero
from sandbox.quickbooks.schema import ATTRIBUTES, PROPERTIES
from schemas.inbound import (
    BooksCustomer,
    BooksInvoice,
    BooksItem,
    BooksPayment,
    changed_fields,
    echo_hash,
    money_text,
    state,
    state_hash,
)
from schemas.records import Address, Customer, Item

ROOT = Path(__file__).resolve().parents[2]
FB_FIXTURES = ROOT / "tests" / "data" / "freshbooks-sdk-fixtures"
XERO_SPEC = Path("/work/shared/specs/xero_accounting.yaml")
if not XERO_SPEC.exists():
    XERO_SPEC = ROOT.parent / "shared" / "specs" / "xero_accounting.yaml"


@cache
def _xero_spec() -> Any:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(XERO_SPEC.read_text(), Loader=loader)


def _xero_example(path: str, collection: str) -> dict[str, Any]:
    body = _xero_spec()["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
    row: dict[str, Any] = body["example"][collection][0]
    return row


def _fb(name: str, key: str) -> dict[str, Any]:
    data = json.loads((FB_FIXTURES / name).read_text())
    row: dict[str, Any] = data["response"]["result"][key]
    return row


def _qbo_valid(entity: str, row: dict[str, Any]) -> dict[str, Any]:
    unknown = set(row) - PROPERTIES[entity] - ATTRIBUTES
    assert not unknown, f"not in the {entity} XSD: {unknown}"
    return row


# --------------------------------------------------------------------------- QuickBooks

QBO_CUSTOMER = _qbo_valid("Customer", {
    "Id": "58", "SyncToken": "3", "DisplayName": "Rivera Plumbing", "GivenName": "Maria",
    "FamilyName": "Rivera", "CompanyName": "Rivera Plumbing LLC",
    "PrimaryEmailAddr": {"Address": "maria@rivera.example"},
    "PrimaryPhone": {"FreeFormNumber": "(555) 010-2000"},
    "BillAddr": {"Line1": "12 Main St", "City": "Austin", "CountrySubDivisionCode": "TX",
                 "PostalCode": "78701", "Country": "US"},
    "CurrencyRef": {"value": "USD", "name": "United States Dollar"}, "Active": True,
    "MetaData": {"CreateTime": "2026-11-20T10:00:00-08:00",
                 "LastUpdatedTime": "2026-11-21T10:00:00-08:00"}})

QBO_INVOICE = _qbo_valid("Invoice", {
    "Id": "130", "SyncToken": "2", "DocNumber": "BC-1001", "TxnDate": "2026-11-20",
    "DueDate": "2026-12-20", "CustomerRef": {"value": "58", "name": "Rivera Plumbing"},
    "CurrencyRef": {"value": "USD"}, "TotalAmt": 129.9, "Balance": 29.9,
    "TxnTaxDetail": {"TotalTax": 9.9},
    "Line": [{"Id": "1", "LineNum": 1, "Amount": 120.0, "Description": "Drain cleaning",
              "DetailType": "SalesItemLineDetail",
              "SalesItemLineDetail": {"ItemRef": {"value": "7", "name": "Drain"},
                                      "Qty": 1, "UnitPrice": 120}},
             {"Amount": 120.0, "DetailType": "SubTotalLineDetail",
              "SubTotalLineDetail": {}}]})


def test_quickbooks_customer_and_item() -> None:
    c = qbo.customer(QBO_CUSTOMER)
    assert c == BooksCustomer(
        display_name="Rivera Plumbing", given_name="Maria", family_name="Rivera",
        company_name="Rivera Plumbing LLC", email="maria@rivera.example",
        phone="(555) 010-2000",
        billing_address=Address("12 Main St", None, "Austin", "TX", "78701", "US"),
        currency="USD", active=True)
    item = qbo.item(_qbo_valid("Item", {
        "Id": "7", "Name": "Drain", "Sku": "DR-1", "UnitPrice": 120, "Type": "Service",
        "IncomeAccountRef": {"value": "79", "name": "Sales"}, "Active": True}))
    assert item == BooksItem(name="Drain", sku="DR-1", unit_price=Decimal("120"),
                             income_account_id="79")
    assert state(item)["unit_price"] == "120.00"


def test_quickbooks_invoice_payment_and_removals() -> None:
    inv = qbo.invoice(QBO_INVOICE)
    assert (inv.number, inv.status, inv.total, inv.balance, inv.subtotal, inv.tax_total) == (
        "BC-1001", "partially_paid", Decimal("129.9"), Decimal("29.9"), Decimal("120.0"),
        Decimal("9.9"))
    assert inv.customer_provider_id == "58" and inv.issue_date == dt.date(2026, 11, 20)
    [line] = inv.lines
    assert (line.item_provider_id, line.quantity, line.amount) == ("7", 1, Decimal("120.0"))
    assert qbo.invoice({**QBO_INVOICE, "Balance": 0}).status == "paid"
    voided = {**QBO_INVOICE, "TotalAmt": 0, "Balance": 0, "PrivateNote": "Voided"}
    assert qbo.invoice(voided).status == "void"
    assert qbo.operation("invoice", voided) == "voided"
    assert qbo.operation("invoice", QBO_INVOICE) is None  # created/updated: the poller's
    stub = {"Id": "130", "status": "Deleted", "domain": "QBO",
            "MetaData": {"LastUpdatedTime": "2026-11-22T10:00:00-08:00"}}
    assert qbo.snapshot("invoice", stub) is None and qbo.operation("invoice", stub) == "deleted"
    pay = qbo.payment(_qbo_valid("Payment", {
        "Id": "9", "TotalAmt": 25, "TxnDate": "2026-11-20", "CurrencyRef": {"value": "USD"},
        "PaymentRefNum": "1042", "PaymentMethodRef": {"value": "2", "name": "Check"},
        "Line": [{"Amount": 25, "LinkedTxn": [{"TxnId": "130", "TxnType": "Invoice"}]}]}))
    assert pay == BooksPayment(amount=Decimal("25"), currency="USD",
                               date=dt.date(2026, 11, 20), method="check", reference="1042",
                               invoice_provider_id="130")


# --------------------------------------------------------------------------- Xero


def test_xero_contact_item_from_the_openapi_examples() -> None:
    c = xero.customer(_xero_example("/Contacts/{ContactID}", "Contacts"))
    assert c.display_name == "Acme Parts Co." and c.given_name == "Blake"
    assert c.email == "bk@krave.co" and c.phone == "1 604 408-0914"  # DEFAULT phone
    assert c.billing_address == Address("1234 Fake Street", None, "Vancouver",
                                        "British Columbia", "V6B 2T4", None)  # POBOX
    assert c.active and c.company_name is None
    item = xero.item(_xero_example("/Items/{ItemID}", "Items"))
    assert item == BooksItem(name="Guitars", sku="123", description="Guitars Fender Strat",
                             unit_price=Decimal("5000.0"), income_account_id="200")


def test_xero_invoice_and_payment_from_the_openapi_examples() -> None:
    inv = xero.invoice(_xero_example("/Invoices/{InvoiceID}", "Invoices"))
    assert inv.number == "INV-0006" and inv.status == "paid" and inv.balance == 0
    assert inv.customer_provider_id == "430fa14a-f945-44d3-9f97-5df5e28441b8"
    assert inv.issue_date == dt.date(2019, 3, 7) and inv.lines
    pay = xero.payment(_xero_example("/Payments/{PaymentID}", "Payments"))
    assert (pay.amount, pay.date, pay.invoice_provider_id, pay.currency) == (
        Decimal("46.0"), dt.date(2018, 11, 29), "046d8a6d-1ae1-4b4d-9340-5601bdf41b87", "NZD")
    assert pay.invoice_balance == 0 and pay.invoice_status == "paid"
    assert pay.method == "bank_transfer" and not pay.deleted
    for status, expected in (("DRAFT", "draft"), ("AUTHORISED", "open"), ("VOIDED", "void"),
                             ("DELETED", "deleted")):
        row = {"Status": status, "AmountPaid": 0}
        assert xero.invoice_status(row) == expected
    assert xero.invoice_status({"Status": "AUTHORISED", "AmountPaid": 5}) == "partially_paid"
    assert xero.operation("invoice", {"Status": "VOIDED"}) == "voided"
    assert xero.operation("invoice", {"Status": "DELETED"}) == "deleted"
    assert xero.operation("customer", {"ContactStatus": "GDPRREQUEST"}) == "deleted"
    assert xero.operation("customer", {"ContactStatus": "ACTIVE"}) is None


# --------------------------------------------------------------------------- FreshBooks


def test_freshbooks_client_from_the_sdk_fixtures() -> None:
    c = fb.customer(_fb("get_client_response.json", "client"))
    assert c == BooksCustomer(
        display_name="American Cyanamid", given_name="Gordon", family_name="Shumway",
        company_name="American Cyanamid", email="gordon.shumway@AmericanCyanamid.com",
        phone=None, billing_address=Address("123 Huron St", None, "Torono", "ON", "M5T 2B3",
                                            "Canada"),
        currency="CAD", active=True)
    listed = json.loads((FB_FIXTURES / "list_clients_response.json").read_text())
    for row in listed["response"]["result"]["clients"]:
        assert fb.customer(row).display_name


def test_freshbooks_deletes_are_deletes_for_every_entity() -> None:
    invoice = {"id": 5, "invoice_number": "0000005", "status": 2, "vis_state": 1,
               "amount": {"amount": "120.00", "code": "USD"},
               "outstanding": {"amount": "120.00", "code": "USD"}, "currency_code": "USD",
               "create_date": "2026-11-20", "customerid": 3}
    assert fb.operation("invoice", invoice) == "deleted"  # not "voided", status not "sent"
    assert fb.invoice(invoice).status == "deleted"
    assert fb.operation("customer", {"vis_state": 1}) == "deleted"
    assert fb.operation("invoice", {**invoice, "vis_state": 0}) is None
    assert fb.invoice({**invoice, "vis_state": 0, "status": 8}).status == "partially_paid"
    assert fb.invoice({**invoice, "vis_state": 0, "status": 1}).status == "draft"
    pay = fb.payment({"id": 9, "invoiceid": 5, "amount": {"amount": "25.00", "code": "USD"},
                      "date": "2026-11-20", "type": "Credit Card", "note": "", "vis_state": 0})
    assert pay == BooksPayment(amount=Decimal("25.00"), currency="USD",
                               date=dt.date(2026, 11, 20), method="card",
                               invoice_provider_id="5")
    item = fb.item({"id": 2, "name": "Drain", "sku": "", "description": "Rooter",
                    "unit_cost": {"amount": "120.00", "code": "USD"}, "vis_state": 0})
    assert item == BooksItem(name="Drain", description="Rooter", unit_price=Decimal("120.00"))


# --------------------------------------------------------------------------- our writes


@pytest.mark.parametrize("module", [qbo, xero, fb], ids=["quickbooks", "xero", "freshbooks"])
def test_what_we_write_hashes_like_what_the_books_then_hold(module: Any) -> None:
    customer = Customer("c-1", "Rivera: Plumbing", given_name="Maria", family_name="Rivera",
                        email="Maria@Rivera.example", phone="+1 555 0100",
                        billing_address=Address("12 Main St", None, "Austin", "TX", "78701",
                                                "US"))
    written = state(module.written_customer(customer))
    assert echo_hash("customer", written) == echo_hash("customer", dict(written))
    # a person's edit of the email, however soon, changes the hash
    edited = {**written, "email": "maria@new.example"}
    assert echo_hash("customer", edited) != echo_hash("customer", written)
    item = Item("i-1", "Drain", sku="DR-1", unit_price=Decimal("120"))
    wrote = state(module.written_item(item))
    assert wrote["unit_price"] == "120.00"
    assert echo_hash("item", {**wrote, "unit_price": "130.00"}) != echo_hash("item", wrote)
    # the income account is not ours to know on every provider: not in the echo view
    assert echo_hash("item", {**wrote, "income_account_id": "79"}) == echo_hash("item", wrote)


def test_state_diff_and_normalisation() -> None:
    assert money_text(Decimal("120.0000")) == "120.00"
    assert money_text(Decimal("1.2345")) == "1.2345"
    before = state(BooksInvoice(number="BC-1", total=Decimal("120"), balance=Decimal("120")))
    after = state(BooksInvoice(number="BC-1", total=Decimal("120.00"), balance=Decimal("95"),
                               status="partially_paid"))
    assert changed_fields(before, after) == ["balance", "status"]
    assert state_hash(before) != state_hash(after)
    assert "number" in changed_fields(None, after)  # created: every field with a value
    # a voided QuickBooks invoice has its amounts zeroed: still the same echo as our void
    ours = {"number": "BC-1", "currency": "USD", "total": "120.00", "status": "void"}
    theirs = {"number": "BC-1", "currency": "USD", "total": "0.00", "status": "void"}
    assert echo_hash("invoice", ours) == echo_hash("invoice", theirs)
