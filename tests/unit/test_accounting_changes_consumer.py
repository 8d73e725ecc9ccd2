"""docs/accounting_changes_consumer.py: applies a customer's email change and an item's
price change, keeps BlueClerk's value on a conflict, and applies a change once."""

from __future__ import annotations

import importlib.util
from decimal import Decimal
from pathlib import Path
from typing import Any

PATH = Path(__file__).resolve().parents[2] / "docs" / "accounting_changes_consumer.py"


def _module() -> Any:
    spec = importlib.util.spec_from_file_location("accounting_changes_consumer", PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _event(kind: str, snapshot: dict[str, Any], changed: list[str],
           previous: dict[str, str | None], conflicting: list[str] | None = None,
           change_id: str = "c-1", entity_id: str | None = "x-1",
           operation: str = "updated") -> dict[str, Any]:
    return {"change_id": change_id, "entity_type": kind, "entity_id": entity_id,
            "provider_record_id": "58", "operation": operation, kind: snapshot,
            "changed_fields": changed, "previous": previous,
            "conflicting_fields": conflicting or []}


def test_applies_an_email_and_a_price_once() -> None:
    apply = _module().apply_change
    store = {"customers": {"x-1": {"email": "old@example.com", "phone": "1"}},
             "items": {"x-1": {"unit_price": "120.00"}}}
    email = _event("customer", {"email": "new@example.com", "phone": "1"}, ["email"],
                   {"email": "old@example.com"})
    assert apply(store, email) == ["set email=new@example.com"]
    assert apply(store, email) == ["duplicate"]
    price = _event("item", {"unit_price": Decimal("135.0000")}, ["unit_price"],
                   {"unit_price": "120.00"}, change_id="c-2")
    assert apply(store, price) == ["set unit_price=135.00"]
    assert store["customers"]["x-1"]["email"] == "new@example.com"
    assert store["items"]["x-1"]["unit_price"] == "135.00"


def test_blueclerk_wins_a_conflict() -> None:
    apply = _module().apply_change
    store = {"customers": {"x-1": {"email": "mine@example.com", "phone": "1"}}}
    flagged = _event("customer", {"email": "books@example.com", "phone": "2"},
                     ["email", "phone"], {"email": "old@example.com", "phone": "1"},
                     conflicting=["email"])
    assert apply(store, flagged) == ["kept email: changed in BlueClerk too", "set phone=2"]
    meanwhile = _event("customer", {"email": "books2@example.com"}, ["email"],
                       {"email": "old@example.com"}, change_id="c-2")
    assert apply(store, meanwhile) == ["kept email: BlueClerk changed it meanwhile"]
    assert store["customers"]["x-1"] == {"email": "mine@example.com", "phone": "2"}
    created = _event("customer", {"email": "walk@example.com"}, ["email"], {},
                     change_id="c-3", entity_id=None, operation="created")
    assert apply(store, created) == ["ignored created customer"]
