"""FreshBooks adapter: the provider port over FreshBooks' accounting API (providers.md 3).

FreshBooks has no idempotency key, no version token and accepts duplicate clients, items
and invoice numbers, so every create is preceded by a lookup, and a match is updated
instead. The match rules are deterministic (the lowest id wins among several matches)
and deliberately narrow, so two different BlueClerk records are never merged:

- client: the same email and organization when the customer has an email, else the same
  organization, first name and last name (all case-insensitive, trimmed). Only documented
  filters are sent (freshbooks.com/api/clients): ``search[email]`` (email identifies a
  client within a business), else ``search[organization_like]``; FreshBooks ignores
  filters it does not know, so the exact match is always made here;
- item: the same SKU (``search[sku]``, documented) when the item has one, else the same
  name (freshbooks.com/api/items has no name filter: the list is read and matched here);
- invoice: the same invoice_number for the same client;
- payment: on the same invoice, the BlueClerk tag ``[BlueClerk <payment id>]`` in its
  note. Amount and date alone are not trusted: two equal payments on one day stay two.
  A tagged payment whose amount changed is deleted and recorded again (FreshBooks does
  not change a payment's amount).

The same lookup covers ``WriteIntent.after_unknown_outcome``: a create that timed out
after FreshBooks applied it is found and updated, not duplicated.

A 5xx may come after FreshBooks applied a write (providers.md section 0): the retry
goes through the same lookup, so it finds the record instead of creating a second one.

Updates: a FreshBooks PUT applies only one phase, the first present of ``ext_vis_state``,
``vis_state``, actions (``action_mark_as_sent``), regular fields, and silently drops the
rest (freshbooks.com/api/active_deleted). So data and state go in separate calls: the data
PUT first, then ``vis_state`` only when the record's state must change (archive, restore),
then ``action_mark_as_sent`` only while the invoice is still a draft.

Other choices: FreshBooks has no void; ``void_invoice`` deletes the invoice with the
documented ``PUT {"invoice": {"vis_state": 1}}`` (FreshBooks Postman collection, "Delete
Invoice"). An invoice with live payments cannot be deleted until they are deleted or
converted to credit (same source); the adapter does not delete payments on its own (that
would take money actually received out of the books while BlueClerk still holds those
payments) and refuses with a permanent ``unsupported`` error naming the payments, so a
person chooses between refund and credit. Inactive customers and items are archived
(``vis_state`` 2). Items have no
income-account field, so the mapping is ignored. Invoices are marked as sent (unless a
BlueClerk draft) so payments can apply. Change polling uses ``search[updated_min]``,
which has day granularity on US Eastern dates: the boundary day is re-read and rows
older than `since` (to the second) are dropped.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any

import httpx

from providers.errors import (
    AuthExpired,
    DuplicateName,
    PermanentProviderError,
    ProviderError,
    ReconnectRequired,
    RecordNotFound,
    Throttled,
    TotalMismatch,
    TransientProviderError,
)
from providers.freshbooks import translate
from providers.http import ProviderHttp, retry_after_seconds
from providers.port import (
    BatchWrite,
    InboundChange,
    IncomeAccount,
    ProviderRecord,
    RemoteCustomer,
    RemoteItem,
    WriteIntent,
)
from providers.taxes import ProviderTaxRate
from schemas.error_codes import ErrorCode
from schemas.money import minor_unit
from schemas.records import Address, Customer, Invoice, Item, Payment

__all__ = ["FreshBooksAdapter", "FreshBooksTotalMismatch", "classify_freshbooks_error"]

PER_PAGE = 100
VALIDATION_ERRNOS = frozenset({1001, 1004, 1005, 1013, 1014, 1017, 1018, 1025, 1040})
DELETED, ARCHIVED, ACTIVE = 1, 2, 0
DRAFT_STATUS = 1  # invoice status codes: freshbooks.com/api/invoices


def _error_entries(response: httpx.Response) -> list[dict[str, Any]]:
    """The errors of any FreshBooks envelope as {errno, field, message, object, value}."""
    try:
        body = response.json()
    except ValueError:
        return []
    if not isinstance(body, dict):
        return []
    inner = body.get("response")
    if isinstance(inner, dict) and isinstance(inner.get("errors"), list):  # accounting
        return [e for e in inner["errors"] if isinstance(e, dict)]
    errors = body.get("errors")
    if isinstance(errors, dict):  # ledger
        details = errors.get("details") or []
        entries = [{"errno": errors.get("status"),
                    "field": (d.get("metadata") or {}).get("field"),
                    "message": d.get("reason") or (d.get("metadata") or {}).get("message")}
                   for d in details if isinstance(d, dict)]
        return entries or [{"errno": errors.get("status"), "field": None,
                            "message": errors.get("message")}]
    if "errno" in body:  # events
        details = "; ".join(str(d) for d in body.get("details") or [])
        return [{"errno": body["errno"], "field": None,
                 "message": f"{body.get('message', '')} {details}".strip()}]
    if "error" in body:  # auth
        return [{"errno": None, "field": None,
                 "message": f"{body['error']}: {body.get('error_description', '')}"}]
    return []


def _describe(entries: list[dict[str, Any]]) -> str:
    parts = []
    for e in entries:
        where = ".".join(str(x) for x in (e.get("object"), e.get("field")) if x)
        value = f" (value {e['value']!r})" if e.get("value") not in (None, "") else ""
        parts.append(f"{where + ': ' if where else ''}{e.get('message') or ''}{value}")
    return "; ".join(parts) or "no error detail"


def classify_freshbooks_error(response: httpx.Response) -> ProviderError | None:
    """Map FreshBooks' three error envelopes (accounting, events, ledger) to our errors."""
    status = response.status_code
    entries = _error_entries(response)
    errnos = {_int(e.get("errno")) for e in entries}
    detail = _describe(entries)
    if status == 401:
        return AuthExpired(f"FreshBooks refused the token: {detail}", status=401)
    if status == 429 or 429 in errnos:
        return Throttled(f"FreshBooks throttled the request: {detail}",
                         retry_after=retry_after_seconds(response, 60.0))
    if status >= 500:
        return TransientProviderError(f"FreshBooks {status}: {detail}", status=status)
    if status == 409 or 409 in errnos:
        return TransientProviderError(f"FreshBooks: {detail}", status=status,
                                      code=ErrorCode.CONFLICT)
    if status == 404 or errnos & {1011, 1012}:
        return RecordNotFound(f"FreshBooks: {detail}", status=status)
    if 1003 in errnos or status == 403:
        return PermanentProviderError(f"FreshBooks refused access: {detail}", status=status,
                                      code=ErrorCode.PERMISSION_DENIED)
    if 1042 in errnos:
        return PermanentProviderError(f"FreshBooks account inactive: {detail}",
                                      status=status, code=ErrorCode.PERMISSION_DENIED)
    if 1026 in errnos:
        return DuplicateName(f"FreshBooks: {detail}", status=status)
    if errnos & VALIDATION_ERRNOS or status in (400, 422):
        return PermanentProviderError(f"FreshBooks rejected the data: {detail}",
                                      status=status, code=ErrorCode.VALIDATION_FAILED)
    return None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _same(a: Any, b: str | None) -> bool:
    return str(a or "").strip().lower() == (b or "").strip().lower()


def _amount(row: Mapping[str, Any]) -> Decimal:
    raw = row.get("amount")
    if isinstance(raw, Mapping):
        raw = raw.get("amount")
    return Decimal(str(raw if raw not in (None, "") else "0"))


def shown(amount: Decimal, currency: str) -> Decimal:
    """An amount as people read it: the currency's own precision (259 JPY, 25.206 KWD),
    more only when the amount really has more (257.4 JPY), never the 4-decimal
    transport scale."""
    exponent = amount.normalize().as_tuple().exponent
    places = max(minor_unit(currency), -exponent if isinstance(exponent, int) else 0)
    return amount.quantize(Decimal(1).scaleb(-places))


class FreshBooksTotalMismatch(TotalMismatch):
    """TotalMismatch whose message names the invoice line that differs (when one does)
    and both figures in the currency's precision, and says what was left in FreshBooks."""

    def __init__(self, invoice: Invoice, theirs: Decimal, provider_id: str,
                 message: str) -> None:
        PermanentProviderError.__init__(self, message)
        self.ours = shown(invoice.total, invoice.currency)
        self.theirs = shown(theirs, invoice.currency)
        self.provider_id = provider_id


class FreshBooksAdapter:
    name = "freshbooks"
    # FreshBooks has no batch or multi-record endpoint (freshbooks.com/api: one record per
    # POST/PUT), so the engine sends FreshBooks writes one at a time.
    batch_size = 1

    def __init__(self, http: ProviderHttp, api_base: str, account_id: str) -> None:
        self._http = http
        self._api = api_base.rstrip("/")
        self._account_id = account_id
        self._base = f"{self._api}/accounting/account/{account_id}"
        self._business_uuid: str | None = None
        self._item_names: dict[str, str] = {}  # FreshBooks item id -> name

    # -- plumbing -------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"{self._base}/{path}"

    def _get(self, path: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        response = self._http.request("GET", self._url(path), params=dict(params or {}))
        result: dict[str, Any] = response.json()["response"]["result"]
        return result

    def _write(self, method: str, path: str, key: str,
               body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {} if body is None else {"json": {key: dict(body)}}
        response = self._http.request(method, self._url(path), write=True, **kwargs)
        result: dict[str, Any] = response.json()["response"]["result"][key]
        return result

    def _pages(self, path: str, plural: str,
               search: Mapping[str, str] | None = None) -> Iterator[dict[str, Any]]:
        params: dict[str, Any] = {f"search[{k}]": v for k, v in (search or {}).items()}
        page = 1
        while True:
            result = self._get(path, {**params, "page": page, "per_page": PER_PAGE})
            yield from result.get(plural, [])
            if page >= int(result.get("pages") or 0):
                return
            page += 1

    @staticmethod
    def _first(rows: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
        found = sorted(rows, key=lambda r: int(r["id"]))
        return found[0] if found else None

    # -- customers ------------------------------------------------------------------

    def _find_client(self, body: Mapping[str, Any]) -> dict[str, Any] | None:
        # Documented filters only (freshbooks.com/api/clients); the exact match is ours.
        if body["email"]:
            rows = self._pages("users/clients", "clients", {"email": body["email"]})
            return self._first([r for r in rows if _same(r.get("email"), body["email"])
                                and _same(r.get("organization"), body["organization"])])
        rows = self._pages("users/clients", "clients",
                           {"organization_like": body["organization"]})
        return self._first([r for r in rows if not r.get("email")
                            and _same(r.get("organization"), body["organization"])
                            and _same(r.get("fname"), body["fname"])
                            and _same(r.get("lname"), body["lname"])])

    def _upsert(self, path: str, key: str, body: Mapping[str, Any], target: str | None,
                vis_state: int) -> dict[str, Any]:
        """Create or update the data, then change the state in a call of its own when it
        differs (a PUT with ``vis_state`` drops every other field)."""
        if target is None:
            row = self._write("POST", path, key, body)
        else:
            row = self._write("PUT", f"{path}/{target}", key, body)
        if row.get("vis_state", ACTIVE) != vis_state:
            row = self._write("PUT", f"{path}/{row['id']}", key, {"vis_state": vis_state})
        return row

    def upsert_customer(self, customer: Customer, link: ProviderRecord | None,
                        write: WriteIntent) -> ProviderRecord:
        body = translate.client_body(customer)
        vis_state = ACTIVE if customer.active else ARCHIVED
        target = link.id if link else None
        if target is None:
            found = self._find_client(body)
            target = str(found["id"]) if found else None
        row = self._upsert("users/clients", "client", body, target, vis_state)
        return ProviderRecord(str(row["id"]))

    def list_customers(self) -> list[RemoteCustomer]:
        return [_remote_customer(c) for c in self._pages("users/clients", "clients")]

    def write_batch(self, writes: Sequence[BatchWrite]
                    ) -> list[ProviderRecord | ProviderError]:
        """The single-record writes one after another (no batch endpoint). A record's own
        refusal or failure is its outcome and the next record is written. A failure of
        the whole connection (throttled, token refused, reconnect required) stops: it is
        raised when no record has an outcome yet, else it is the outcome of every record
        not written, so the records already written keep theirs."""
        out: list[ProviderRecord | ProviderError] = []
        for n, w in enumerate(writes):
            try:
                if isinstance(w.record, Customer):
                    out.append(self.upsert_customer(w.record, w.link, w.write))
                else:
                    out.append(self.upsert_item(w.record, w.income_account_id, w.link,
                                                w.write))
            except (Throttled, AuthExpired, ReconnectRequired) as exc:
                if not out:
                    raise
                out.extend([exc] * (len(writes) - n))
                break
            except ProviderError as exc:
                out.append(exc)
        return out

    # -- items ----------------------------------------------------------------------

    def _find_item(self, body: Mapping[str, Any]) -> dict[str, Any] | None:
        if body["sku"]:
            rows = self._pages("items/items", "items", {"sku": body["sku"]})
            return self._first([r for r in rows if _same(r.get("sku"), body["sku"])])
        # freshbooks.com/api/items has no name filter: read the list, match here.
        rows = self._pages("items/items", "items")
        return self._first([r for r in rows if _same(r.get("name"), body["name"])])

    def upsert_item(self, item: Item, income_account_id: str | None,
                    link: ProviderRecord | None, write: WriteIntent) -> ProviderRecord:
        # FreshBooks items carry no income account: income_account_id is not sent.
        body = translate.item_body(item)
        vis_state = ACTIVE if item.active else ARCHIVED
        target = link.id if link else None
        if target is None:
            found = self._find_item(body)
            target = str(found["id"]) if found else None
        row = self._upsert("items/items", "item", {**body, "qty": "1"} if target is None
                           else body, target, vis_state)
        self._item_names[str(row["id"])] = str(row.get("name") or item.name)
        return ProviderRecord(str(row["id"]))

    def list_items(self) -> list[RemoteItem]:
        items = []
        for i in self._pages("items/items", "items"):
            self._item_names[str(i["id"])] = str(i.get("name") or "")
            items.append(RemoteItem(
                id=str(i["id"]), name=str(i.get("name") or ""), sku=i.get("sku") or None,
                description=i.get("description") or None,
                unit_price=_amount(i.get("unit_cost") or {}), income_account_id=None,
                active=i.get("vis_state", ACTIVE) == ACTIVE,
            ))
        return items

    def _item_name(self, item_id: str) -> str | None:
        if item_id not in self._item_names:
            try:
                row = self._get(f"items/items/{item_id}")["item"]
            except RecordNotFound:
                return None
            self._item_names[item_id] = str(row.get("name") or "")
        return self._item_names[item_id] or None

    # -- invoices -------------------------------------------------------------------

    def _line_taxes(self, invoice: Invoice, taxes: Mapping[str, ProviderTaxRate] | None
                    ) -> list[translate.LineTax | None] | None:
        """The FreshBooks tax of each line: the mapped tax's name, with the percent and
        compound flag the business's tax of that name has now (GET taxes/taxes; a rate
        changed in FreshBooks is used as changed), else the mapping's own (a tax FreshBooks
        lines carry by name and percent without a tax record). Untaxed lines: None."""
        if taxes is None or invoice.tax_mode == "none":
            return None
        if not any(li.tax_key in taxes for li in invoice.lines):
            return [None] * len(invoice.lines)
        company = {t.name.strip().casefold(): t for t in self.list_tax_rates()}
        out: list[translate.LineTax | None] = []
        for line in invoice.lines:
            code = taxes.get(line.tax_key) if line.taxed else None
            if code is None:
                out.append(None)
                continue
            current = company.get(code.name.strip().casefold())
            chosen = current if current is not None and current.rate is not None else code
            percent = chosen.rate if chosen.rate is not None else line.tax_rate_percent
            out.append(translate.LineTax(chosen.name, percent, chosen.compound))
        return out

    def _invoice_body(self, invoice: Invoice, customer_id: str,
                      items: Mapping[str, ProviderRecord],
                      line_taxes: list[translate.LineTax | None] | None) -> dict[str, Any]:
        names: dict[str, str] = {}
        for line in invoice.lines:
            record = items.get(line.item_id)
            if record is not None and line.item_id not in names:
                name = self._item_name(record.id)
                if name:
                    names[line.item_id] = name
        return translate.invoice_body(invoice, customer_id, names, line_taxes)

    def _find_invoice(self, number: str, customer_id: str) -> dict[str, Any] | None:
        rows = self._pages("invoices/invoices", "invoices",
                           {"invoice_number": number, "customerid": customer_id})
        return self._first([r for r in rows if str(r.get("invoice_number")) == number
                            and str(r.get("customerid")) == customer_id])

    @staticmethod
    def _invoice_record(invoice: Invoice, row: Mapping[str, Any]) -> ProviderRecord:
        """FreshBooks' totals after a write, compared with BlueClerk's to the cent: the
        total, and (2-decimal currencies, when the reply has its lines) the tax total =
        total - the lines' amounts + the discount."""
        record = ProviderRecord(str(row["id"]), None, _amount(row))
        theirs_tax: Decimal | None = None
        lines = row.get("lines")
        if isinstance(lines, list) and minor_unit(invoice.currency) == 2:
            discount = _amount({"amount": row.get("discount_total")})
            theirs_tax = record.total - sum((_amount(li) for li in lines), Decimal(0)) \
                + discount if record.total is not None else None
        if record.total != invoice.total or (theirs_tax is not None
                                             and theirs_tax != invoice.tax_total):
            cur = invoice.currency
            tax = (f"tax {shown(theirs_tax, cur)} {cur}, " if theirs_tax is not None else "")
            raise FreshBooksTotalMismatch(
                invoice, _amount(row), record.id,
                f"invoice {invoice.number}: BlueClerk tax {shown(invoice.tax_total, cur)} "
                f"{cur}, total {shown(invoice.total, cur)} {cur}; FreshBooks holds {tax}"
                f"total {shown(_amount(row), cur)} {cur} (invoice {record.id}, left as it "
                "is; not marked as sent)")
        return record

    def upsert_invoice(self, invoice: Invoice, customer: ProviderRecord,
                       items: Mapping[str, ProviderRecord], link: ProviderRecord | None,
                       write: WriteIntent,
                       taxes: Mapping[str, ProviderTaxRate] | None = None) -> ProviderRecord:
        line_taxes = self._line_taxes(invoice, taxes)
        body = self._invoice_body(invoice, customer.id, items, line_taxes)
        refused = translate.tax_mismatch(invoice, body["lines"], line_taxes)
        if refused is not None:
            # Refuse before writing: FreshBooks would compute other figures.
            raise FreshBooksTotalMismatch(invoice, refused[0],
                                          link.id if link else "(not written)",
                                          f"{refused[1]}; nothing was written to FreshBooks")
        target = link.id if link else None
        if target is None:
            found = self._find_invoice(invoice.number, customer.id)
            target = str(found["id"]) if found else None
        # One phase per PUT: data, then (separately) restore, then mark as sent.
        if target is None:
            row = self._write("POST", "invoices/invoices", "invoice", body)
        else:
            row = self._write("PUT", f"invoices/invoices/{target}", "invoice", body)
        record = self._invoice_record(invoice, row)  # a mismatch stays as it is (draft)
        path = f"invoices/invoices/{record.id}"
        if row.get("vis_state", ACTIVE) == DELETED:
            row = self._write("PUT", path, "invoice", {"vis_state": ACTIVE})
        if invoice.status != "draft" and _int(row.get("status")) == DRAFT_STATUS:
            row = self._write("PUT", path, "invoice", {"action_mark_as_sent": True})
        return self._invoice_record(invoice, row)

    def _live_payments(self, invoice_id: str) -> list[dict[str, Any]]:
        rows = self._pages("payments/payments", "payments", {"invoiceid": invoice_id})
        return [r for r in rows if r.get("vis_state", ACTIVE) == ACTIVE
                and str(r.get("invoiceid")) == invoice_id]

    def void_invoice(self, invoice: Invoice, link: ProviderRecord,
                     write: WriteIntent) -> ProviderRecord:
        # No void in FreshBooks: the documented delete is PUT vis_state 1 (Postman "Delete
        # Invoice"). Repeating it is harmless, so an unknown outcome is simply retried.
        row = self._get(f"invoices/invoices/{link.id}")["invoice"]
        if row.get("vis_state", ACTIVE) != DELETED:
            payments = self._live_payments(link.id)
            if payments:
                # Deleting them would take money actually received out of the books.
                listed = ", ".join(
                    f"{p['id']} ({shown(_amount(p), invoice.currency)} {invoice.currency})"
                    for p in sorted(payments, key=lambda p: int(p["id"])))
                raise PermanentProviderError(
                    f"FreshBooks invoice {link.id} ({invoice.number}) has payments {listed}; "
                    "FreshBooks deletes an invoice only after its payments are deleted or "
                    "converted to credit. Refund them or convert them to credit in "
                    "FreshBooks, then replay this void.",
                    code=ErrorCode.UNSUPPORTED)
            row = self._write("PUT", f"invoices/invoices/{link.id}", "invoice",
                              {"vis_state": DELETED})
        return ProviderRecord(str(row["id"]), None, _amount(row))

    # -- payments -------------------------------------------------------------------

    def _find_payment(self, payment: Payment,
                      body: Mapping[str, Any]) -> dict[str, Any] | None:
        tag = translate.payment_tag(payment)
        rows = self._pages("payments/payments", "payments",
                           {"invoiceid": str(body["invoiceid"])})
        return self._first([r for r in rows if tag in str(r.get("note") or "")])

    def record_payment(self, payment: Payment, invoice: ProviderRecord,
                       customer: ProviderRecord, link: ProviderRecord | None,
                       write: WriteIntent) -> ProviderRecord:
        if payment.amount != translate.q2(payment.amount):
            raise PermanentProviderError(
                f"FreshBooks keeps amounts to 2 decimals; the payment of "
                f"{shown(payment.amount, payment.currency)} {payment.currency} cannot be "
                "recorded exactly", code=ErrorCode.UNSUPPORTED)
        body = translate.payment_body(payment, invoice.id)
        existing: dict[str, Any] | None = None
        if link is not None:
            existing = self._get(f"payments/payments/{link.id}")["payment"]
        else:
            existing = self._find_payment(payment, body)
        if existing is not None and existing.get("vis_state", ACTIVE) == ACTIVE \
                and _amount(existing) == payment.amount \
                and str(existing.get("invoiceid")) == invoice.id:
            update = {k: body[k] for k in ("date", "type", "note")}
            row = self._write("PUT", f"payments/payments/{existing['id']}", "payment", update)
        else:
            if existing is not None and existing.get("vis_state", ACTIVE) == ACTIVE:
                # FreshBooks does not change a payment's amount or invoice: replace it.
                self._write("PUT", f"payments/payments/{existing['id']}", "payment",
                            {"vis_state": DELETED})
            row = self._write("POST", "payments/payments", "payment", body)
        return ProviderRecord(str(row["id"]), None, _amount(row))

    # -- income accounts ------------------------------------------------------------

    def business_uuid(self) -> str:
        if self._business_uuid is None:
            response = self._http.request("GET", f"{self._api}/auth/api/v1/users/me")
            identity = response.json().get("response") or {}
            for membership in identity.get("business_memberships") or []:
                business = membership.get("business") or {}
                if business.get("account_id") == self._account_id:
                    self._business_uuid = str(business["business_uuid"])
                    break
            else:
                raise PermanentProviderError(
                    f"the connected FreshBooks user has no business with account "
                    f"{self._account_id}", code=ErrorCode.PERMISSION_DENIED)
        return self._business_uuid

    def list_tax_rates(self) -> list[ProviderTaxRate]:
        """The business's taxes (`GET taxes/taxes`: name, amount as a percent, compound;
        freshbooks.com/api/taxes); a line may also carry any name and percent."""
        out = []
        for tax in self._pages("taxes/taxes", "taxes"):
            try:
                rate = Decimal(str(tax.get("amount")))
            except ArithmeticError:
                continue
            out.append(ProviderTaxRate(str(tax["name"]), str(tax["name"]), rate.normalize(),
                                       bool(tax.get("compound"))))
        return out

    def list_income_accounts(self) -> list[IncomeAccount]:
        url = (f"{self._api}/accounting/businesses/{self.business_uuid()}"
               "/ledger_accounts/accounts")
        rows = self._http.request("GET", url).json().get("data") or []
        return [IncomeAccount(str(a["uuid"]), str(a["name"]), a.get("number") or None)
                for a in rows
                if a.get("type") == "income" and a.get("state", "active") == "active"]

    # -- changes --------------------------------------------------------------------

    _FEEDS = (("customer", "users/clients", "clients"), ("item", "items/items", "items"),
              ("invoice", "invoices/invoices", "invoices"),
              ("payment", "payments/payments", "payments"))

    def fetch_changes(self, since: dt.datetime) -> list[InboundChange]:
        since_utc = (since if since.tzinfo else since.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)
        floor = since_utc.replace(microsecond=0)
        day = translate.eastern_day(since_utc)
        changes: list[InboundChange] = []
        for entity, path, plural in self._FEEDS:
            seen: set[str] = set()
            for search in ({"updated_min": day}, {"updated_min": day, "vis_state": "1"}):
                for row in self._change_rows(path, plural, search):
                    rid = str(row["id"])
                    changed = translate.parse_stamp(row.get("updated"))
                    if rid in seen or changed is None or changed < floor:
                        continue
                    seen.add(rid)
                    changes.append(_inbound(entity, rid, changed, row))
        # A payment comes with its invoice's state after it: FreshBooks does not report
        # the invoice as changed, so it is read and added as changed with the payment.
        have = {c.provider_id for c in changes if c.entity_type == "invoice"}
        for change in list(changes):
            invoice_id = getattr(change.snapshot, "invoice_provider_id", None)
            if change.entity_type != "payment" or not invoice_id or invoice_id in have:
                continue
            have.add(invoice_id)
            try:
                row = self._get(f"invoices/invoices/{invoice_id}",
                                {"include[]": "lines"})["invoice"]
            except ProviderError:
                continue
            changes.append(_inbound("invoice", invoice_id, change.changed_at, row))
        changes.sort(key=lambda c: c.changed_at)
        return changes

    def _change_rows(self, path: str, plural: str, search: Mapping[str, str]
                     ) -> Iterator[dict[str, Any]]:
        """Like `_pages`, with invoice lines included (lists omit them otherwise)."""
        params: dict[str, Any] = {f"search[{k}]": v for k, v in search.items()}
        if plural == "invoices":
            params["include[]"] = "lines"
        page = 1
        while True:
            result = self._get(path, {**params, "page": page, "per_page": PER_PAGE})
            yield from result.get(plural, [])
            if page >= int(result.get("pages") or 0):
                return
            page += 1


def _inbound(entity: str, rid: str, changed: dt.datetime, row: dict[str, Any]
             ) -> InboundChange:
    """vis_state 1 is a deletion for every entity (FreshBooks has no void); otherwise
    "updated": the poller tells created from updated by whether BlueClerk knew it."""
    from providers.freshbooks import canonical

    return InboundChange(entity, rid, canonical.operation(entity, row) or "updated", changed,
                         row, canonical.snapshot(entity, row))


def _remote_customer(c: Mapping[str, Any]) -> RemoteCustomer:
    fname, lname = c.get("fname") or None, c.get("lname") or None
    organization = str(c.get("organization") or "")
    person = " ".join(p for p in (fname, lname) if p)
    fields = ("p_street", "p_street2", "p_city", "p_province", "p_code", "p_country")
    address = (Address(*(c.get(f) or None for f in fields))
               if any(c.get(f) for f in fields) else None)
    return RemoteCustomer(
        id=str(c["id"]), display_name=organization or person or str(c.get("email") or ""),
        given_name=fname, family_name=lname,
        company_name=organization if organization and organization != person else None,
        email=c.get("email") or None,
        phone=c.get("bus_phone") or c.get("mob_phone") or c.get("home_phone") or None,
        address=address, active=c.get("vis_state", ACTIVE) == ACTIVE,
    )
