"""Wizard step 3, taxes: BlueClerk's tax rates matched to the company's codes with the
reason shown, the ambiguous ones listed with their candidates for the user to map, and
a saved mapping re-driving the invoices that waited for it; on each provider, over the
control API and the simulators, on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import uuid
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from sandbox.control_client import auth, consent, new_tenant, process
from sandbox.scenario import EventFactory, build_invoice
from schemas.records import Item

AUTH = auth("control-tests-token")
# A Xero organisation charging US sales tax, with two local taxes at the same 10%.
XERO_RATES = [{"TaxType": "TAX001", "Name": "State Sales Tax", "EffectiveRate": "8.25"},
              {"TaxType": "TAX002", "Name": "City Tax", "EffectiveRate": "10"},
              {"TaxType": "TAX003", "Name": "County Tax", "EffectiveRate": "10"}]


def _call(api: TestClient, method: str, path: str, status: int = 200, **kw: Any) -> Any:
    r = api.request(method, path, headers=AUTH, **kw)
    assert r.status_code == status, r.text
    return r.json()


@pytest.mark.parametrize("provider", ["quickbooks", "xero", "freshbooks"])
def test_tax_section_of_the_wizard(control_api: TestClient, sandbox_url: str,
                                   provider: str) -> None:
    account, tenant = f"acct-{uuid.uuid4().hex[:8]}", new_tenant(provider)
    base = f"/v1/accounts/{account}"
    if provider == "xero":
        httpx.post(f"{sandbox_url}/xero/_sandbox/seed/{tenant}",
                   json={"TaxRates": XERO_RATES}, timeout=10).raise_for_status()
    assert consent(control_api, account, provider, tenant).status_code == 200
    f = EventFactory(account)
    assert process(control_api, f.customer("c1", "Ada Lovelace"))[0] == "synced"
    process(control_api, f.event(Item("i1", "Drain clearing", unit_price=Decimal("100"))))
    if provider != "freshbooks":
        accounts = _call(control_api, "GET", f"{base}/wizard/income-accounts")
        _call(control_api, "POST", f"{base}/mappings/apply-to-unmapped",
              json={"income_account_id": accounts["income_accounts"][0]["id"]})
    invoice = build_invoice("inv1", "c1", "1001", "USD", "exclusive",
                            [("i1", "1", "100", "0", "8.25"), ("i1", "2", "50", "0", "10")])
    named = (("state", "State Sales Tax"), ("local", "Local Tax"))
    invoice = dataclasses.replace(invoice, lines=tuple(
        dataclasses.replace(line, tax_rate_id=key, tax_rate_name=name)
        for line, (key, name) in zip(invoice.lines, named, strict=True)))
    expected = ("waiting_dependency", "unmapped_tax_rate") if provider == "xero" \
        else ("synced", None)
    assert process(control_api, f.event(invoice)) == expected

    body = _call(control_api, "GET", f"{base}/wizard/tax-rates")
    rates = {r["tax_key"]: r for r in body["tax_rates"]}
    assert set(rates) == {"state", "local"}
    state = rates["state"]["mapping"]
    assert state is not None and state["matched_by"] == "auto" and state["reason"]
    if provider == "quickbooks":
        assert state["code"] == "TAX" and "automated" in state["reason"]
        assert body["apply_to_all"]["code"] == "TAX" and body["unmapped"] == []
    elif provider == "freshbooks":
        assert (state["name"], state["rate"]) == ("State Sales Tax", "8.25")
        assert body["unmapped"] == []
    else:
        assert state["code"] == "TAX001" and "8.25%" in state["reason"]
        local = rates["local"]
        assert body["unmapped"] == ["local"] and local["mapping"] is None
        assert {c["code"] for c in local["candidates"]} == {"TAX002", "TAX003"}
        assert local["invoices_waiting"] == 1 and "choose" in local["reason"]
        saved = _call(control_api, "PUT", f"{base}/tax-mappings/local",
                      json={"tax_code": "TAX003"})
        assert saved["redriven"] == {"synced": 1}
        books = httpx.get(f"{sandbox_url}/xero/_sandbox/books/{tenant}", timeout=10).json()
        lines = books["Invoices"][0]["LineItems"]
        assert [li["TaxType"] for li in lines] == ["TAX001", "TAX003"]
        after = _call(control_api, "GET", f"{base}/wizard/tax-rates")
        mapped = {r["tax_key"]: r["mapping"] for r in after["tax_rates"]}
        assert mapped["local"]["matched_by"] == "user" and after["unmapped"] == []

    refused = _call(control_api, "PUT", f"{base}/tax-mappings/state", 400,
                    json={"tax_code": "NO-SUCH-CODE"})
    assert refused["error"]["code"] == "unknown_tax_code"
    unknown = _call(control_api, "PUT", f"{base}/tax-mappings/never-seen", 404,
                    json={"tax_code": "TAX"})
    assert unknown["error"]["code"] == "unknown_tax_rate"
