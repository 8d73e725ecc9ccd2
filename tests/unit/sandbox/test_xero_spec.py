"""Fast checks of the Xero simulator's pure parts: OpenAPI validation, where, rounding."""

from __future__ import annotations

from decimal import Decimal

import pytest

from sandbox.xero import openapi
from sandbox.xero.books import line_totals, parse_xero_date
from sandbox.xero.where import WhereError, compile_where


def test_spec_copy_is_packaged() -> None:
    assert openapi.SPEC_PATH.is_file()
    assert {"Contact", "Item", "Invoice", "Payment", "PaymentDelete"} <= set(openapi.schemas())


@pytest.mark.parametrize(("schema", "element", "needle"), [
    ("Contact", {"Name": "x" * 256}, "Name: value is longer than the maximum length of 255"),
    ("Contact", {"Name": "x", "ContactStatus": "BOGUS"}, "ContactStatus: 'BOGUS'"),
    ("Contact", {"Name": 5}, "Name: expected type string"),
    ("Contact", {"ContactID": "not-a-uuid"}, "not a valid uuid"),
    ("Item", {"Name": "no code"}, "'Code' is a required property"),
    ("Item", {"Code": "c" * 31}, "Code: value is longer than the maximum length of 30"),
    ("Invoice", {"LineAmountTypes": "Sometimes"}, "LineAmountTypes"),
    ("Invoice", {"CurrencyCode": "XXX"}, "CurrencyCode"),
    ("Invoice", {"LineItems": [{"UnitAmount": "1"}]}, "LineItems.0.UnitAmount"),
    ("PaymentDelete", {}, "'Status' is a required property"),
])
def test_spec_violations_are_named(schema: str, element: dict[str, object], needle: str) -> None:
    errors = openapi.element_errors(schema, element)
    assert any(needle in e for e in errors), errors


def test_spec_accepts_readonly_and_unknown_fields() -> None:
    ok = {"Name": "A", "IsCustomer": True, "UpdatedDateUTC": "/Date(0+0000)/", "Whatever": 1,
          "Phones": [{"PhoneType": "MOBILE", "PhoneNumber": "1"}]}
    assert openapi.element_errors("Contact", ok) == []
    pay = {"Invoice": {"InvoiceID": "3f1c2a9e-5d4b-4c3a-9b2a-1e0f9d8c7b6a"},
           "Account": {"Code": "090"}, "Date": "2019-03-12", "Amount": 1}
    assert openapi.element_errors("Payment", pay) == []


def test_where_forms() -> None:
    rec = {"Name": 'O\'Brien "Q"', "Class": "REVENUE", "Total": 10.5,
           "Contact": {"ContactID": "ABC"}, "IsCustomer": True}
    assert compile_where('Name=="o\'brien \\"q\\""')(rec)
    assert compile_where('Class=="REVENUE" AND Total>10')(rec)
    assert compile_where('Contact.ContactID==Guid("abc")')(rec)
    assert compile_where('Name.Contains("brien") && IsCustomer')(rec)
    assert not compile_where('Class!="REVENUE" || Total==11')(rec)
    with pytest.raises(WhereError):
        compile_where('Name=="unterminated')


def test_line_rounding() -> None:
    d = Decimal
    assert line_totals(d(3), d("9.99"), d(10), d(15), "Exclusive") == (
        d("26.97"), d("4.05"), d("3.00"))
    assert line_totals(d(2), d("57.5"), d(20), d(15), "Inclusive")[:2] == (d("92.00"), d("12.00"))
    assert line_totals(d(1), d("1.03"), d(0), d(15), "Exclusive")[1] == d("0.15")
    assert line_totals(d(1), d("100"), d(0), d(15), "NoTax")[1] == d("0.00")


def test_dates() -> None:
    assert parse_xero_date("/Date(1551399321043+0000)/") == 1551399321.043
    assert parse_xero_date("2019-03-12") == 1552348800.0
    assert parse_xero_date("garbage") is None
