"""QuickBooks Online adapter: the provider port over the v3 Accounting API.

Queries use only properties QuickBooks lets you filter on (sandbox/quickbooks/README.md):
customers by ``DisplayName``, items by ``Name``, accounts by ``Name``/``AccountType``,
invoices by ``DocNumber``; a payment is found after an unknown outcome by ``CustomerRef`` and
``TxnDate`` and then matched on ``PaymentRefNum`` here (that property is not a documented
filter). Pages are at most 1000 rows (``MAXRESULTS`` > 1000 is refused), walked with
``STARTPOSITION``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import httpx

from providers.errors import (
    AuthExpired,
    DuplicateName,
    PermanentProviderError,
    ProviderError,
    RecordNotFound,
    StaleVersion,
    Throttled,
    TotalMismatch,
    TransientProviderError,
)
from providers.http import ProviderHttp, retry_after_seconds
from providers.port import (
    InboundChange,
    IncomeAccount,
    ProviderRecord,
    RemoteCustomer,
    RemoteItem,
    WriteIntent,
)
from providers.quickbooks import translate
from providers.taxes import ProviderTaxRate
from schemas.error_codes import ErrorCode
from schemas.money import quantize_money
from schemas.records import Address, Customer, Invoice, Item, Payment

__all__ = ["QuickBooksAdapter", "classify_quickbooks_error"]

MINOR_VERSION = "75"
PAGE_SIZE = 1000  # QuickBooks' MAXRESULTS ceiling
# Name-list entities sharing the DisplayName namespace with customers (6240).
_OTHER_NAMES = ("Vendor", "Employee")


def _fault_errors(response: httpx.Response) -> tuple[str, list[dict[str, Any]]]:
    try:
        body = response.json()
    except ValueError:
        return "", []
    fault = body.get("Fault") or body.get("fault") or {}
    return str(fault.get("type", "")), list(fault.get("Error") or fault.get("error") or [])


def classify_quickbooks_error(response: httpx.Response) -> ProviderError | None:
    """Map QuickBooks' Fault envelope (and its XML 429s) to the service's errors."""
    status = response.status_code
    if status == 429 or "ThrottleExceeded" in response.text:
        return Throttled("QuickBooks throttled the request (code 3001)",
                         retry_after=retry_after_seconds(response, 60.0))
    fault_type, errors = _fault_errors(response)
    first = errors[0] if errors else {}
    code = str(first.get("code", ""))
    detail = f"{first.get('Message', '')}: {first.get('Detail', '')}".strip(": ")
    if status == 401:
        return AuthExpired(f"QuickBooks refused the token ({detail or 'code 3200'})", status=401)
    if status >= 500:
        return TransientProviderError(f"QuickBooks {status}: {detail}", status=status)
    if code == "5010":
        return StaleVersion(f"QuickBooks stale object: {detail}", status=status)
    if code == "6240":
        return DuplicateName(f"QuickBooks: {detail}", status=status)
    if code == "610":
        return RecordNotFound(f"QuickBooks: {detail}", status=status)
    if status == 403 or fault_type.startswith("Authorizat"):
        return PermanentProviderError(f"QuickBooks refused access: {detail}", status=status,
                                      code=ErrorCode.PERMISSION_DENIED)
    if status == 400:
        return PermanentProviderError(f"QuickBooks rejected the data (code {code}): {detail}",
                                      status=status)
    return None


class QuickBooksAdapter:
    name = "quickbooks"

    def __init__(self, http: ProviderHttp, api_base: str, realm_id: str) -> None:
        self._http = http
        self._base = f"{api_base.rstrip('/')}/{realm_id}"
        self._undeposited: str | None = None

    # -- plumbing -------------------------------------------------------------------

    def _post(self, entity: str, body: dict[str, Any], write: WriteIntent,
              operation: str | None = None) -> dict[str, Any]:
        params = {"minorversion": MINOR_VERSION, "requestid": write.key[:50]}
        if operation:
            params["operation"] = operation
        response = self._http.request("POST", f"{self._base}/{entity.lower()}", json=body,
                                      params=params, write=True)
        result: dict[str, Any] = response.json()[entity]
        return result

    def _get(self, entity: str, entity_id: str) -> dict[str, Any]:
        response = self._http.request("GET", f"{self._base}/{entity.lower()}/{entity_id}",
                                      params={"minorversion": MINOR_VERSION})
        result: dict[str, Any] = response.json()[entity]
        return result

    def query(self, statement: str) -> dict[str, Any]:
        response = self._http.request("GET", f"{self._base}/query",
                                      params={"query": statement, "minorversion": MINOR_VERSION})
        result: dict[str, Any] = response.json().get("QueryResponse", {})
        return result

    def _query_all(self, entity: str, where: str = "") -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        start = 1
        while True:
            page = self.query(f"SELECT * FROM {entity}{where} STARTPOSITION {start} "
                              f"MAXRESULTS {PAGE_SIZE}")
            batch = page.get(entity, [])
            rows.extend(batch)
            if len(batch) < PAGE_SIZE:
                return rows
            start += PAGE_SIZE

    def _find_one(self, entity: str, field: str, value: str,
                  any_status: bool = False) -> dict[str, Any] | None:
        """First row whose ``field`` equals ``value``; ``any_status`` includes inactive
        name-list rows (QuickBooks hides them unless the query mentions ``Active``)."""
        where = f" WHERE {field} = {translate.quote_query_literal(value)}"
        if any_status:
            where += " AND Active IN (true, false)"
        found = self.query(f"SELECT * FROM {entity}{where}").get(entity, [])
        return found[0] if found else None

    @staticmethod
    def _record(entity: dict[str, Any]) -> ProviderRecord:
        total = entity.get("TotalAmt")
        return ProviderRecord(str(entity["Id"]), str(entity.get("SyncToken", "0")),
                              Decimal(str(total)) if total is not None else None)

    def _upsert(self, entity: str, body: dict[str, Any], link: ProviderRecord | None,
                write: WriteIntent, lookup: tuple[str, str] | None) -> dict[str, Any]:
        if link is None and write.after_unknown_outcome and lookup is not None:
            existing = self._find_one(entity, *lookup)
            if existing is not None:
                link = self._record(existing)
        if link is None:
            return self._post(entity, body, write)
        update = {**body, "Id": link.id, "SyncToken": link.version or "0", "sparse": True}
        try:
            return self._post(entity, update, write)
        except StaleVersion:
            # Someone edited the record in QuickBooks: re-read its SyncToken, retry once.
            current = self._get(entity, link.id)
            update["SyncToken"] = str(current["SyncToken"])
            return self._post(entity, update, WriteIntent(write.key[:44] + "-stale"))

    # -- the port -------------------------------------------------------------------

    def upsert_customer(self, customer: Customer, link: ProviderRecord | None,
                        write: WriteIntent) -> ProviderRecord:
        body = translate.customer_body(customer)
        name = str(body["DisplayName"])
        if link is None and write.after_unknown_outcome:
            existing = self._find_one("Customer", "DisplayName", name, any_status=True)
            if existing is not None:
                link = self._record(existing)
        if link is None:
            try:
                return self._record(self._post("Customer", body, write))
            except DuplicateName as exc:
                return self._duplicate_customer_name(name, write, exc)
        return self._record(self._update_customer(customer, body, link, write))

    def _update_customer(self, customer: Customer, body: dict[str, Any],
                         link: ProviderRecord, write: WriteIntent) -> dict[str, Any]:
        """Sparse update; ``Active`` only when it changes (read the current record first)."""
        current = self._get("Customer", link.id)
        update = {k: v for k, v in body.items() if k != "Active"}
        update |= {"Id": link.id, "SyncToken": str(current["SyncToken"]), "sparse": True}
        if bool(current.get("Active", True)) != customer.active:
            update["Active"] = customer.active
        try:
            return self._post("Customer", update, write)
        except PermanentProviderError as exc:
            if "Active" not in update or not _has_balance_refusal(exc):
                raise
        # QuickBooks will not make a customer with an open balance inactive. Save the
        # other changes, then fail permanently with what to do.
        del update["Active"]
        saved = self._post("Customer", update, WriteIntent(write.key[:44] + "-keep"))
        balance = saved.get("Balance", current.get("Balance", "?"))
        raise PermanentProviderError(
            f"QuickBooks refused to make customer {saved.get('DisplayName', link.id)!r} "
            f"(Id {link.id}) inactive because it has an open balance of {balance} "
            f"{customer.currency}; its other changes were saved. Settle or write off the "
            "balance in QuickBooks, then save the customer in BlueClerk again.",
            status=400,
        )

    def _duplicate_customer_name(self, name: str, write: WriteIntent,
                                 exc: DuplicateName) -> ProviderRecord:
        """6240 on create: DisplayName is unique across customers, vendors and employees
        (QuickBooks-V3-PHP-SDK #241). Find who holds the name."""
        existing = self._find_one("Customer", "DisplayName", name, any_status=True)
        if existing is not None:
            if write.after_unknown_outcome:
                # Our own earlier attempt (timed out or answered 5xx) created it: link it.
                return self._record(existing)
            raise DuplicateName(
                f"QuickBooks already has a customer named {name!r} (Id {existing['Id']}) "
                "that this sync did not create. Link it to the BlueClerk customer in the "
                "mapping step, or rename one of them.",
                status=400,
            ) from exc
        for other in _OTHER_NAMES:
            holder = self._find_one(other, "DisplayName", name, any_status=True)
            if holder is not None:
                raise DuplicateName(
                    f"QuickBooks already has a {other.lower()} named {name!r} "
                    f"({other} Id {holder['Id']}); QuickBooks requires a name to be unique "
                    "across customers, vendors and employees, so the customer cannot be "
                    f"created. Rename the {other.lower()} in QuickBooks (or the customer in "
                    "BlueClerk) and retry.",
                    status=400,
                ) from exc
        raise exc

    def upsert_item(self, item: Item, income_account_id: str | None,
                    link: ProviderRecord | None, write: WriteIntent) -> ProviderRecord:
        body = translate.item_body(item, income_account_id)
        return self._record(self._upsert("Item", body, link, write, ("Name", body["Name"])))

    def upsert_invoice(self, invoice: Invoice, customer: ProviderRecord,
                       items: Mapping[str, ProviderRecord], link: ProviderRecord | None,
                       write: WriteIntent,
                       taxes: Mapping[str, ProviderTaxRate] | None = None) -> ProviderRecord:
        body = translate.invoice_body(invoice, customer.id, {k: v.id for k, v in items.items()})
        entity = self._upsert("Invoice", body, link, write, ("DocNumber", body["DocNumber"]))
        record = self._record(entity)
        if record.total is not None and record.total != invoice.total:
            # Amounts in the currency's own precision (259 JPY, 25.206 KWD), not the
            # transport scale.
            raise TotalMismatch(quantize_money(invoice.total, invoice.currency),
                                quantize_money(record.total, invoice.currency),
                                invoice.currency, record.id)
        return record

    def void_invoice(self, invoice: Invoice, link: ProviderRecord,
                     write: WriteIntent) -> ProviderRecord:
        body = {"Id": link.id, "SyncToken": link.version or "0"}
        try:
            entity = self._post("Invoice", body, write, operation="void")
        except StaleVersion:
            current = self._get("Invoice", link.id)
            body["SyncToken"] = str(current["SyncToken"])
            entity = self._post("Invoice", body, WriteIntent(write.key[:44] + "-stale"),
                                operation="void")
        return self._record(entity)

    def record_payment(self, payment: Payment, invoice: ProviderRecord,
                       customer: ProviderRecord, link: ProviderRecord | None,
                       write: WriteIntent) -> ProviderRecord:
        deposit = self._deposit_account()
        body = translate.payment_body(payment, customer.id, invoice.id, deposit)
        if link is None and write.after_unknown_outcome:
            existing = self._find_payment(customer.id, body)
            if existing is not None:
                link = self._record(existing)
        return self._record(self._upsert("Payment", body, link, write, None))

    def _find_payment(self, customer_id: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """Payments are queried by the documented filters ``CustomerRef`` and ``TxnDate``;
        ``PaymentRefNum`` (not a documented filter) is matched here."""
        where = (f" WHERE CustomerRef = {translate.quote_query_literal(customer_id)}"
                 f" AND TxnDate = {translate.quote_query_literal(str(body['TxnDate']))}")
        for row in self._query_all("Payment", where):
            if row.get("PaymentRefNum") == body["PaymentRefNum"]:
                return row
        return None

    def _deposit_account(self) -> str | None:
        # Looked up once per connection: the chart of accounts does not move per payment.
        if self._undeposited is None:
            found = self._find_one("Account", "Name", "Undeposited Funds")
            self._undeposited = str(found["Id"]) if found else ""
        return self._undeposited or None

    def list_customers(self) -> list[RemoteCustomer]:
        return [_remote_customer(c) for c in self._query_all("Customer")]

    def list_items(self) -> list[RemoteItem]:
        return [
            RemoteItem(
                id=str(i["Id"]), name=i["Name"], sku=i.get("Sku"),
                description=i.get("Description"),
                unit_price=Decimal(str(i.get("UnitPrice", "0"))),
                income_account_id=(i.get("IncomeAccountRef") or {}).get("value"),
                active=bool(i.get("Active", True)),
            )
            for i in self._query_all("Item")
        ]

    def list_tax_rates(self) -> list[ProviderTaxRate]:
        """A US company with automated sales tax: QuickBooks assigns the code and computes
        the tax, so one code (TAX) serves every taxed line (Intuit, "Manage sales tax for
        US locales"); untaxed lines are NON."""
        return [ProviderTaxRate("TAX", "Automated sales tax", None, kind="automated")]

    def list_income_accounts(self) -> list[IncomeAccount]:
        rows = self._query_all("Account", " WHERE AccountType = 'Income'")
        return [IncomeAccount(str(a["Id"]), a["Name"], a.get("AcctNum")) for a in rows]

    def fetch_changes(self, since: dt.datetime) -> list[InboundChange]:
        response = self._http.request(
            "GET", f"{self._base}/cdc",
            params={"entities": "Customer,Item,Invoice,Payment",
                    "changedSince": since.isoformat(), "minorversion": MINOR_VERSION},
        )
        changes: list[InboundChange] = []
        for block in response.json().get("CDCResponse", []):
            for query in block.get("QueryResponse", []):
                for entity, rows in query.items():
                    if not isinstance(rows, list):
                        continue
                    for row in rows:
                        changes.append(_inbound(entity, row))
        return changes


def _has_balance_refusal(exc: ProviderError) -> bool:
    """QuickBooks' refusal to deactivate a name with a balance ("Delete List Has Balance
    Error ... non-zero balance", quickbooks-ruby #390); its numeric code is not public."""
    text = str(exc).lower()
    return "has balance" in text or "non-zero balance" in text


def _remote_customer(c: dict[str, Any]) -> RemoteCustomer:
    addr = c.get("BillAddr") or {}
    return RemoteCustomer(
        id=str(c["Id"]), display_name=c.get("DisplayName", ""), given_name=c.get("GivenName"),
        family_name=c.get("FamilyName"), company_name=c.get("CompanyName"),
        email=(c.get("PrimaryEmailAddr") or {}).get("Address"),
        phone=(c.get("PrimaryPhone") or {}).get("FreeFormNumber"),
        address=Address(addr.get("Line1"), addr.get("Line2"), addr.get("City"),
                        addr.get("CountrySubDivisionCode"), addr.get("PostalCode"),
                        addr.get("Country")) if addr else None,
        active=bool(c.get("Active", True)),
    )


def _inbound(entity: str, row: dict[str, Any]) -> InboundChange:
    meta = row.get("MetaData") or {}
    changed = meta.get("LastUpdatedTime") or dt.datetime.now(dt.UTC).isoformat()
    if row.get("status") == "Deleted":
        operation = "deleted"
    elif str(row.get("PrivateNote", "")).startswith("Voided"):
        operation = "voided"
    elif meta.get("CreateTime") == meta.get("LastUpdatedTime"):
        operation = "created"
    else:
        operation = "updated"
    return InboundChange(entity.lower(), str(row["Id"]), operation,
                         dt.datetime.fromisoformat(str(changed).replace("Z", "+00:00")), row)
