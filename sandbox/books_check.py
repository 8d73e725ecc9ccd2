"""Compare what a provider's books hold with BlueClerk's latest snapshots, field by field.

Shared by the e2e tests (business week, chaos, kill -9) and bench/chaos.py. The books are
read from the simulators' own dumps (``/_sandbox/books/{tenant}``) and matched to
BlueClerk records through the links the service recorded (``entity_links``), so a record
that was renamed is still found, a duplicate shows as an extra record, and a lost or
reordered update shows as a field that is not BlueClerk's latest value. The field names
below are the providers' (QuickBooks Customer/Item/Invoice, Xero Contacts/Items/Invoices,
FreshBooks clients/items/invoices), not the adapters' code.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from sandbox.harness import BooksView, read_books
from schemas.records import Customer, Invoice, Item, Payment

__all__ = ["CUSTOMER_FIELDS", "ITEM_FIELDS", "LISTS", "Expected", "books_mismatches", "read_links"]

Json = dict[str, Any]


def _get(record: Json, *path: str) -> str:
    """A text field of a books record; absent or null reads as "" (a cleared field)."""
    value: Any = record
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return "" if value is None else str(value)


def _xero_address(contact: Json) -> Json:
    return next((a for a in contact.get("Addresses") or []
                 if a.get("AddressType") == "POBOX"), {})


def _fb_customer_name(c: Json) -> str:
    return _get(c, "organization") or f"{_get(c, 'fname')} {_get(c, 'lname')}".strip()


# BlueClerk field -> where each provider's books hold it.
CUSTOMER_FIELDS: dict[str, dict[str, Callable[[Json], str]]] = {
    "quickbooks": {
        "display_name": lambda c: _get(c, "DisplayName"),
        "given_name": lambda c: _get(c, "GivenName"),
        "family_name": lambda c: _get(c, "FamilyName"),
        "email": lambda c: _get(c, "PrimaryEmailAddr", "Address"),
        "phone": lambda c: _get(c, "PrimaryPhone", "FreeFormNumber"),
        "line1": lambda c: _get(c, "BillAddr", "Line1"),
        "line2": lambda c: _get(c, "BillAddr", "Line2"),
        "city": lambda c: _get(c, "BillAddr", "City"),
        "region": lambda c: _get(c, "BillAddr", "CountrySubDivisionCode"),
        "postal_code": lambda c: _get(c, "BillAddr", "PostalCode"),
        "country": lambda c: _get(c, "BillAddr", "Country"),
    },
    "xero": {
        "display_name": lambda c: _get(c, "Name"),
        "given_name": lambda c: _get(c, "FirstName"),
        "family_name": lambda c: _get(c, "LastName"),
        "email": lambda c: _get(c, "EmailAddress"),
        "phone": lambda c: next((_get(p, "PhoneNumber") for p in c.get("Phones") or []
                                 if p.get("PhoneType") == "DEFAULT"), ""),
        "line1": lambda c: _get(_xero_address(c), "AddressLine1"),
        "line2": lambda c: _get(_xero_address(c), "AddressLine2"),
        "city": lambda c: _get(_xero_address(c), "City"),
        "region": lambda c: _get(_xero_address(c), "Region"),
        "postal_code": lambda c: _get(_xero_address(c), "PostalCode"),
        "country": lambda c: _get(_xero_address(c), "Country"),
    },
    "freshbooks": {  # customers without a company name: the name is the client's
        "display_name": _fb_customer_name,
        "given_name": lambda c: _get(c, "fname"),
        "family_name": lambda c: _get(c, "lname"),
        "email": lambda c: _get(c, "email"),
        "phone": lambda c: _get(c, "bus_phone"),
        "line1": lambda c: _get(c, "p_street"),
        "line2": lambda c: _get(c, "p_street2"),
        "city": lambda c: _get(c, "p_city"),
        "region": lambda c: _get(c, "p_province"),
        "postal_code": lambda c: _get(c, "p_code"),
        "country": lambda c: _get(c, "p_country"),
    },
}
ITEM_FIELDS: dict[str, dict[str, Callable[[Json], str]]] = {
    "quickbooks": {"name": lambda i: _get(i, "Name"), "unit_price": lambda i: _get(i, "UnitPrice")},
    "xero": {"name": lambda i: _get(i, "Name"),
             "unit_price": lambda i: _get(i, "SalesDetails", "UnitPrice")},
    "freshbooks": {"name": lambda i: _get(i, "name"),
                   "unit_price": lambda i: _get(i, "unit_cost", "amount")},
}
INVOICE_FIELDS: dict[str, dict[str, Callable[[Json], str]]] = {
    "quickbooks": {"number": lambda i: _get(i, "DocNumber"),
                   "customer": lambda i: _get(i, "CustomerRef", "value"),
                   "total": lambda i: _get(i, "TotalAmt"),
                   "voided": lambda i: str(_get(i, "PrivateNote").startswith("Voided"))},
    "xero": {"number": lambda i: _get(i, "InvoiceNumber"),
             "customer": lambda i: _get(i, "Contact", "ContactID"),
             "total": lambda i: _get(i, "Total"),
             "voided": lambda i: str(_get(i, "Status") in ("VOIDED", "DELETED"))},
    "freshbooks": {"number": lambda i: _get(i, "invoice_number"),
                   "customer": lambda i: _get(i, "customerid"),
                   "total": lambda i: _get(i, "amount", "amount"),
                   "voided": lambda i: str(i.get("vis_state") == 1)},
}
# Where the books list each record type, the id the service's links point at, and which
# records are live (FreshBooks and Xero keep deleted records with a state).
LISTS: dict[str, dict[str, tuple[str, str]]] = {
    "quickbooks": {"customer": ("Customer", "Id"), "item": ("Item", "Id"),
                   "invoice": ("Invoice", "Id")},
    "xero": {"customer": ("Contacts", "ContactID"), "item": ("Items", "ItemID"),
             "invoice": ("Invoices", "InvoiceID")},
    "freshbooks": {"customer": ("clients", "id"), "item": ("items", "id"),
                   "invoice": ("invoices", "id")},
}
# Places of a catalogue price the books keep: FreshBooks stores item unit_cost in cents
# (sandbox/freshbooks/books.py), Xero UnitPrice at the organisation's 4 unit decimals;
# QuickBooks keeps what it is sent.
PRICE_PLACES = {"quickbooks": None, "xero": 4, "freshbooks": 2}
_NUMERIC = {"unit_price", "total"}


def _live(provider: str, entity: str, record: Json) -> bool:
    if provider == "freshbooks":
        return entity == "invoice" or record.get("vis_state", 0) != 1
    if provider == "xero":
        return record.get("Status") not in ("DELETED", "ARCHIVED") or entity == "invoice"
    return record.get("Active", True) is not False


@dataclass
class Expected:
    """BlueClerk's latest snapshot of every record of one tenant (what the books must show).

    ``customers``/``items``/``invoices``/``payments`` map BlueClerk ids to the latest
    record; ``sandbox.scenario.Week`` has these four attributes and can be passed as is.
    """

    customers: Mapping[str, Customer] = field(default_factory=dict)
    items: Mapping[str, Item] = field(default_factory=dict)
    invoices: Mapping[str, Invoice] = field(default_factory=dict)
    payments: Mapping[str, Payment] = field(default_factory=dict)


def _expected_customer(c: Customer) -> dict[str, str]:
    a = c.billing_address
    return {"display_name": c.display_name, "given_name": c.given_name or "",
            "family_name": c.family_name or "", "email": c.email or "",
            "phone": c.phone or "",
            "line1": (a and a.line1) or "", "line2": (a and a.line2) or "",
            "city": (a and a.city) or "", "region": (a and a.region) or "",
            "postal_code": (a and a.postal_code) or "", "country": (a and a.country) or ""}


def _expected_item(item: Item, provider: str) -> dict[str, str]:
    places = PRICE_PLACES[provider]
    price = item.unit_price if places is None else item.unit_price.quantize(
        Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    return {"name": item.name, "unit_price": str(price)}


def _expected_invoice(customer_links: Mapping[str, str]
                      ) -> Callable[[Invoice], dict[str, str]]:
    def expect(inv: Invoice) -> dict[str, str]:
        fields = {"number": inv.number, "customer": customer_links.get(inv.customer_id, "?"),
                  "voided": str(inv.status == "void")}
        if inv.status != "void":  # a void zeroes the amounts in QuickBooks
            fields["total"] = str(inv.total)
        return fields
    return expect


def _same(name: str, expected: str, held: str) -> bool:
    if name in _NUMERIC:
        try:
            return Decimal(expected) == Decimal(held)
        except ArithmeticError:
            return False
    return expected == held


def read_links(db_url: str, account: str) -> dict[str, dict[str, str]]:
    """entity type -> BlueClerk id -> provider id, as the service recorded them."""
    url = db_url.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT entity_type, entity_id, provider_id "
                                     "FROM entity_links WHERE account_id = :a"), {"a": account})
            links: dict[str, dict[str, str]] = {}
            for entity_type, entity_id, provider_id in rows:
                links.setdefault(str(entity_type), {})[str(entity_id)] = str(provider_id)
            return links
    finally:
        engine.dispose()


def books_mismatches(sandbox_url: str, provider: str, tenant: str, expected: Any,
                     links: Mapping[str, Mapping[str, str]],
                     fields: frozenset[str] | None = None) -> list[str]:
    """Every difference between one tenant's books and BlueClerk's latest snapshots.

    Customers and items field by field (``fields`` narrows which are compared, for
    checks of one kind of record); invoices by number, customer, total and void state;
    payments by invoice and amount. Records the books hold beyond BlueClerk's (a
    duplicate) and records missing from them (a lost event) are reported too.
    An empty list means the books equal BlueClerk's records.
    """
    raw: Json = httpx.get(f"{sandbox_url}/{provider}/_sandbox/books/{tenant}",
                          timeout=30).json()
    problems: list[str] = []
    customers_links = links.get("customer", {})
    checks: list[tuple[str, Mapping[str, Any], Callable[[Any], dict[str, str]]]] = [
        ("customer", expected.customers, _expected_customer),
        ("item", expected.items, lambda i: _expected_item(i, provider)),
        ("invoice", expected.invoices, _expected_invoice(customers_links)),
    ]
    readers = {"customer": CUSTOMER_FIELDS[provider], "item": ITEM_FIELDS[provider],
               "invoice": INVOICE_FIELDS[provider]}
    for entity, latest, expect in checks:
        list_name, id_field = LISTS[provider][entity]
        live = [r for r in raw.get(list_name, []) if _live(provider, entity, r)]
        held = {str(r[id_field]): r for r in live}
        entity_links = links.get(entity, {})
        if len(live) > len(latest):
            problems.append(f"{provider} {tenant}: {len(live) - len(latest)} extra {entity} "
                            f"records in the books (BlueClerk has {len(latest)})")
        elif len(live) < len(latest):
            problems.append(f"{provider} {tenant}: {len(latest) - len(live)} missing {entity} "
                            f"records in the books (BlueClerk has {len(latest)})")
        linked = Counter(entity_links.get(record_id) for record_id in latest)
        problems += [f"{provider} {entity}: two BlueClerk records linked to {pid}"
                     for pid, n in linked.items() if pid is not None and n > 1]
        for record_id, record in sorted(latest.items()):
            provider_id = entity_links.get(record_id)
            if provider_id is None or provider_id not in held:
                problems.append(f"{provider} {entity} {record_id}: not in the books")
                continue
            for name, value in expect(record).items():
                if fields is not None and name not in fields and entity != "invoice":
                    continue
                got = readers[entity][name](held[provider_id])
                if not _same(name, value, got):
                    problems.append(f"{provider} {entity} {record_id}.{name}: BlueClerk "
                                    f"{value!r}, books {got!r}")
    view: BooksView = read_books(sandbox_url, provider, tenant)
    numbers = Counter(view.invoice_numbers)
    problems += [f"{provider} {tenant}: invoice number {n} is on {k} invoices"
                 for n, k in numbers.items() if k > 1]
    want = Counter((expected.invoices[p.invoice_id].number, p.amount)
                   for p in expected.payments.values())
    paid = Counter(view.payments)
    if paid - want:
        problems.append(f"{provider} {tenant}: {sum((paid - want).values())} extra payments "
                        f"{dict(paid - want)}")
    if want - paid:
        problems.append(f"{provider} {tenant}: {sum((want - paid).values())} missing payments "
                        f"{dict(want - paid)}")
    return problems
