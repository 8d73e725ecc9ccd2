"""Xero adapter: the provider port over the Accounting API 2.0 (providers.md section 2).

Writes send one element in an array with `summarizeErrors=false` (per-element
ValidationErrors come back in a 200) and an `Idempotency-Key` (Xero replays the
response for 6 minutes); `write_batch` sends up to 50 customers or items in one such
request, each element's outcome its own. Past those 6 minutes a replay would create a
second record, so after an unknown outcome the record is looked up by its external key first
(contacts by ContactNumber, items by Code, invoices by InvoiceNumber, payments by the
"BC-<id>" Reference among the invoice's payments) and adopted; the adopting write uses
a derived key, since Xero refuses a key reused with another URL or body.

Xero has no version tokens (last write wins), so `ProviderRecord.version` is None.

Invoices never stay wrong in the books (providers.md 2.7, X-round). Each line carries
the organisation's TaxType mapped to its BlueClerk tax rate (`taxes`; untaxed lines NONE)
and Xero computes the tax at that TaxType's rate. Before writing, every line is worked
out under Xero's arithmetic at the rate the organisation has now (`GET /TaxRates`, read
again when it disagrees) and compared with BlueClerk's, in the currency's precision: a
line whose mapped rate gives another tax (BlueClerk 8.25 % mapped to a 15 % type) is
refused with XeroTaxMismatch naming the line and both figures, and nothing is written.
The invoice's total under Xero's arithmetic is then compared with BlueClerk's
(TotalMismatch, naming the lines that differ). Since Xero computes the tax itself, an
AUTHORISED invoice with tax left to Xero is written as DRAFT, its lines and total
compared with BlueClerk's, and only then AUTHORISED; on a difference the draft is
deleted (Status DELETED). Should an AUTHORISED invoice still come back with another total,
it is voided. Each error says what was left in Xero.

Every invoice line names its item's income account (`SalesDetails.AccountCode`); an
item without one (e.g. imported from the books that way) refuses the invoice with
`unmapped_item` instead of posting it to a default sales account.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx

from providers.errors import (
    AuthExpired,
    DuplicateName,
    PermanentProviderError,
    ProviderError,
    RecordNotFound,
    Throttled,
    TotalMismatch,
    TransientProviderError,
    UnknownOutcome,
    not_sent,
)
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
from providers.xero import translate
from providers.xero.translate import ItemRef, LineTax
from schemas.error_codes import ErrorCode
from schemas.money import minor_unit, quantize_money
from schemas.records import Customer, Invoice, InvoiceLine, Item, Payment

__all__ = [
    "XeroAdapter",
    "XeroTaxMismatch",
    "XeroTotalMismatch",
    "batch_idempotency_key",
    "classify_xero_error",
]

PAGE_SIZE = 100  # Xero's page size for paged GETs (Contacts, Invoices, Payments)
# Elements in one multi-record PUT/POST: Xero sets no element cap (3.5 MB a request) and
# recommends batches of at most 50 (providers.md 2.2).
BATCH_SIZE = 50
# A `where` of OR-ed external keys is cut so each lookup stays a modest URL.
_WHERE_CHARS = 1500
# The organisation's tax rates are read again after this long, and whenever a line's
# check disagrees with them (a rate edited in Xero is seen at once).
TAX_RATES_TTL_S = 60.0
# The TaxType of lines BlueClerk does not tax: "No GST" (NZ), "No VAT" (UK), "Tax
# Exempt" (US); an AU organisation files it as BAS Excluded (Xero, "Changes to tax codes
# in Australia", 2013).
NO_TAX = "NONE"


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json(parse_float=Decimal)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _is_duplicate_name(message: str) -> bool:
    low = message.lower()
    return "contact name" in low and "already assigned" in low


def _is_number_taken(message: str) -> bool:
    low = message.lower()
    return "contact number" in low and "already assigned" in low


def _shown(amount: Decimal, currency: str) -> str:
    """An amount in the currency's own precision (25.206 KWD, 259 JPY), unless that would
    hide a difference (Xero's 2 dp total of a JPY invoice may have cents)."""
    exact = quantize_money(amount, currency)
    return str(exact if exact == amount else amount.quantize(Decimal("0.01")))


def _pct(rate: Decimal) -> str:
    return f"{rate.normalize():f}%"


@dataclass(frozen=True, slots=True)
class _PlannedLine:
    """One invoice line: BlueClerk's figures and the Xero tax type it goes out with."""

    number: int  # 1-based, as the user sees it
    line: InvoiceLine
    code: str
    code_name: str
    rate: Decimal  # the TaxType's rate in the organisation now
    ours_tax: Decimal  # BlueClerk's tax on the line, in the currency's precision

    def label(self) -> str:
        what = (self.line.description or self.line.item_id).strip()
        return f"line {self.number} ({what})"


def _line_differences(invoice: Invoice, plan: Sequence[_PlannedLine],
                      theirs: Sequence[tuple[Decimal, Decimal | None]]) -> list[str]:
    """Each line whose amount or tax in Xero is not BlueClerk's, with both figures."""
    cur = invoice.currency
    out: list[str] = []
    for p, (amount, tax) in zip(plan, theirs, strict=False):
        parts = []
        if amount != p.line.amount:
            parts.append(f"amount BlueClerk {_shown(p.line.amount, cur)} {cur}, Xero "
                         f"{_shown(amount, cur)} {cur}")
        if tax is not None and tax != p.ours_tax:
            parts.append(f"tax BlueClerk {_shown(p.ours_tax, cur)} {cur}, Xero "
                         f"{_shown(tax, cur)} {cur} ({p.code} at {_pct(p.rate)})")
        if parts:
            out.append(f"{p.label()}: " + ", ".join(parts))
    return out


class XeroTotalMismatch(TotalMismatch):
    """TotalMismatch whose message says what Xero would make or made of the invoice,
    which lines differ, and what was left in Xero."""

    def __init__(self, invoice: Invoice, theirs: Decimal, provider_id: str,
                 outcome: str, lines: Sequence[str] = ()) -> None:
        cur = invoice.currency
        where = ("; " + "; ".join(lines)) if lines else (
            "; no single line differs: the lines' sum, each rounded to 2 decimals by "
            "Xero, is not BlueClerk's total")
        PermanentProviderError.__init__(
            self, f"invoice {invoice.number}: BlueClerk total {_shown(invoice.total, cur)} "
                  f"{cur} but Xero's total is {_shown(theirs, cur)} {cur} (Xero rounds each "
                  f"line to 2 decimals){where}; {outcome}")
        self.ours, self.theirs, self.provider_id = invoice.total, theirs, provider_id
        self.outcome = outcome
        self.lines = list(lines)


class XeroTaxMismatch(TotalMismatch):
    """A line's mapped Xero tax type would tax it differently from BlueClerk: refused
    before anything is written. `lines` says, per line, both figures."""

    def __init__(self, invoice: Invoice, theirs: Decimal, lines: Sequence[str]) -> None:
        PermanentProviderError.__init__(
            self, f"invoice {invoice.number}: " + "; ".join(lines)
            + ". Nothing was written to Xero. Map each of these BlueClerk tax rates to a "
              "Xero tax type at the same rate in the setup wizard (step 3, taxes), or "
              "correct the rate, then send the invoice again")
        self.ours, self.theirs, self.provider_id = invoice.total, theirs, ""
        self.lines = list(lines)


class _ContactNumberTaken(PermanentProviderError):
    """Another contact holds the ContactNumber: the customer was created before."""


def _validation_error(messages: list[str], status: int | None) -> ProviderError:
    text = "; ".join(dict.fromkeys(m for m in messages if m)) or "validation failed"
    if any(_is_duplicate_name(m) for m in messages):
        return DuplicateName(f"Xero: {text}", status=status)
    if any(_is_number_taken(m) for m in messages):
        return _ContactNumberTaken(f"Xero: {text}", status=status)
    if any("already exists" in m.lower() and "item code" in m.lower() for m in messages):
        return DuplicateName(f"Xero: {text}", status=status)
    return PermanentProviderError(f"Xero rejected the data: {text}", status=status,
                                  code=ErrorCode.VALIDATION_FAILED)


def _element_messages(element: Mapping[str, Any]) -> list[str]:
    return [str(e.get("Message", "")) for e in element.get("ValidationErrors") or []
            if isinstance(e, Mapping)]


def classify_xero_error(response: httpx.Response) -> ProviderError | None:
    """Map Xero's error bodies (providers.md 2.5) and status codes to the service's errors."""
    status = response.status_code
    if status == 401:
        detail = _json(response).get("Detail") or "AuthenticationUnsuccessful"
        return AuthExpired(f"Xero refused the token ({detail})", status=401)
    if status == 403:
        detail = _json(response).get("Detail") or response.text[:200]
        return PermanentProviderError(f"Xero refused access ({detail}): the organisation may "
                                      "be disconnected", status=403,
                                      code=ErrorCode.PERMISSION_DENIED)
    if status == 404:
        return RecordNotFound("Xero: the resource was not found", status=404)
    if status == 429:
        scope = response.headers.get("X-Rate-Limit-Problem") or "minute"
        return Throttled(f"Xero throttled the request ({scope} limit)",
                         retry_after=retry_after_seconds(response, 60.0), scope=scope.lower())
    if status >= 500:
        retry = (retry_after_seconds(response) if "Retry-After" in response.headers
                 else None)
        return TransientProviderError(f"Xero {status}: {response.text[:200]}", status=status,
                                      retry_after=retry)
    if status == 400:
        body = _json(response)
        if not body:
            return PermanentProviderError(f"Xero 400: {response.text[:300]}", status=400)
        messages: list[str] = []
        for element in body.get("Elements") or []:
            if isinstance(element, Mapping):
                messages.extend(_element_messages(element))
        if not messages:
            messages.append(str(body.get("Message") or body.get("Detail") or
                                body.get("error") or response.text[:300]))
        return _validation_error(messages, 400)
    return None


class XeroAdapter:
    name = "xero"
    batch_size = BATCH_SIZE

    def __init__(self, http: ProviderHttp, api_base: str) -> None:
        self._http = http
        self._base = api_base.rstrip("/")
        self._items: dict[str, ItemRef] = {}  # ItemID -> code and sales account
        self._bank_accounts: list[dict[str, Any]] | None = None
        # TaxType -> (name, rate) of the organisation's revenue tax rates, and when read.
        self._tax_rates: dict[str, tuple[str, Decimal]] = {}
        self._tax_rates_at: float | None = None
        self._income_code: str | None = None

    # -- plumbing -------------------------------------------------------------------

    def _get(self, path: str, params: Mapping[str, str] | None = None,
             headers: Mapping[str, str] | None = None) -> dict[str, Any]:
        response = self._http.request("GET", f"{self._base}/{path}", params=dict(params or {}),
                                      headers=headers)
        return _json(response)

    def _get_one(self, collection: str, ident: str) -> dict[str, Any] | None:
        try:
            rows = self._get(f"{collection}/{ident}").get(collection) or []
        except RecordNotFound:
            return None
        return rows[0] if rows else None

    def _write(self, method: str, path: str, collection: str, element: dict[str, Any],
               key: str, unitdp: bool = False) -> dict[str, Any]:
        params = {"summarizeErrors": "false"}
        if unitdp:
            params["unitdp"] = "4"
        # Xero refuses a key reused with another method, URL or body (X-idem), and one
        # intent may send several different requests (create, adopt, authorise, withdraw;
        # an adopted draft may be updated again after it was approved): the key is the
        # intent's plus a digest of this exact request, so only a true repeat is replayed.
        digest = hashlib.sha256(json.dumps([method, path, element], sort_keys=True,
                                           default=str).encode()).hexdigest()[:16]
        response = self._http.request(method, f"{self._base}/{path}",
                                      json={collection: [element]}, params=params,
                                      headers={"Idempotency-Key": f"{key}:{digest}"},
                                      write=True)
        rows = _json(response).get(collection) or []
        if not rows or not isinstance(rows[0], dict):
            raise TransientProviderError(f"Xero answered {method} {path} without a record",
                                         status=response.status_code)
        row: dict[str, Any] = rows[0]
        messages = _element_messages(row)
        if messages or row.get("StatusAttributeString") == "ERROR":
            raise _validation_error(messages or ["the element was refused"], 400)
        return row

    def _pages(self, collection: str, params: Mapping[str, str] | None = None,
               headers: Mapping[str, str] | None = None) -> Iterator[dict[str, Any]]:
        page = 1
        while True:
            rows = self._get(collection, {**(params or {}), "page": str(page)},
                             headers).get(collection) or []
            yield from rows
            if len(rows) < PAGE_SIZE:
                return
            page += 1

    def _where(self, collection: str, field: str, value: str,
               extra: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        params = {"where": f"{field}=={translate.quote_where(value)}", **(extra or {})}
        rows: list[dict[str, Any]] = self._get(collection, params).get(collection) or []
        return rows

    @staticmethod
    def _adopt_key(write: WriteIntent) -> str:
        return f"{write.key}:adopt"

    # -- customers ------------------------------------------------------------------

    def upsert_customer(self, customer: Customer, link: ProviderRecord | None,
                        write: WriteIntent) -> ProviderRecord:
        body = translate.contact_body(customer)
        key = write.key
        if link is None and write.after_unknown_outcome:
            found = self._find_contact(body["ContactNumber"])
            if found is not None:
                link, key = ProviderRecord(str(found["ContactID"])), self._adopt_key(write)
        if link is None:
            try:
                row = self._write("PUT", "Contacts", "Contacts", body, key)
            except _ContactNumberTaken as exc:
                row = self._adopt_contact(body, write, exc)
        else:
            row = self._write("POST", f"Contacts/{link.id}", "Contacts", body, key)
        return ProviderRecord(str(row["ContactID"]))

    def _adopt_contact(self, body: dict[str, Any], write: WriteIntent,
                       exc: _ContactNumberTaken) -> dict[str, Any]:
        """Another contact holds the ContactNumber: an earlier attempt whose link was lost
        created it. Adopt it (a write of this body onto it), or re-raise."""
        found = self._find_contact(body["ContactNumber"])
        if found is None:
            raise exc
        return self._write("POST", f"Contacts/{found['ContactID']}", "Contacts", body,
                           self._adopt_key(write))

    def _find_contact(self, number: str) -> dict[str, Any] | None:
        rows = self._where("Contacts", "ContactNumber", number, {"includeArchived": "true"})
        return rows[0] if rows else None

    # -- items ----------------------------------------------------------------------

    def upsert_item(self, item: Item, income_account_id: str | None,
                    link: ProviderRecord | None, write: WriteIntent) -> ProviderRecord:
        body = translate.item_body(item, income_account_id)
        key = write.key
        if link is None and write.after_unknown_outcome:
            found = self._where("Items", "Code", body["Code"])
            if found:
                link, key = ProviderRecord(str(found[0]["ItemID"])), self._adopt_key(write)
        if link is None:
            row = self._write("PUT", "Items", "Items", body, key, unitdp=True)
        else:
            row = self._write("POST", f"Items/{link.id}", "Items", body, key, unitdp=True)
        return self._remember_item(row, body)

    def _remember_item(self, row: Mapping[str, Any], body: Mapping[str, Any]) -> ProviderRecord:
        item_id = str(row["ItemID"])
        self._items[item_id] = ItemRef(str(row.get("Code") or body["Code"]),
                                       (row.get("SalesDetails") or {}).get("AccountCode"))
        return ProviderRecord(item_id)

    # -- batched writes ---------------------------------------------------------------

    def write_batch(self, writes: Sequence[BatchWrite]
                    ) -> list[ProviderRecord | ProviderError]:
        """Customers in multi-element requests on /Contacts, items on /Items (a mixed
        batch makes requests on both), at most 50 elements each, `summarizeErrors=false`
        so every element has its own outcome in a 200 (providers.md 2.2). Creates go in a
        PUT (create only, so a clash is refused as the single path's is) and updates in a
        POST whose elements carry ContactID / ItemID (X-oas: POST updates or creates; an
        element with its id updates). Writes after an unknown outcome are looked up first
        in one `where` per kind (ContactNumber / Code, as the single path does) and a
        found record is updated. An element refused for its ContactNumber (a create whose
        link was lost) is adopted as the single path does."""
        done: dict[int, ProviderRecord | ProviderError] = {}
        in_flight: list[int] = []
        try:
            for collection in ("Contacts", "Items"):
                mine = [n for n, w in enumerate(writes)
                        if isinstance(w.record, Customer) == (collection == "Contacts")]
                for start in range(0, len(mine), BATCH_SIZE):
                    part = [(n, writes[n]) for n in mine[start:start + BATCH_SIZE]]
                    for request in self._plan_part(collection, part):
                        in_flight = [n for n, _, _ in request.elements]
                        done.update(self._send_part(request))
                        in_flight = []
        except ProviderError as exc:
            if not done:
                raise
            # Outcomes already known are kept; the request that failed carries its error,
            # and writes never sent say so.
            for n in in_flight:
                done[n] = exc
            for n in range(len(writes)):
                done.setdefault(n, not_sent(exc))
        return [done[n] for n in range(len(writes))]

    def _plan_part(self, collection: str, part: Sequence[tuple[int, BatchWrite]]
                   ) -> list[_PartRequest]:
        creates = _PartRequest("PUT", collection)
        updates = _PartRequest("POST", collection)
        bodies: list[tuple[int, BatchWrite, dict[str, Any]]] = []
        for n, w in part:
            if isinstance(w.record, Customer):
                bodies.append((n, w, translate.contact_body(w.record)))
            else:
                bodies.append((n, w, translate.item_body(w.record, w.income_account_id)))
        key_field, id_field = (("ContactNumber", "ContactID") if collection == "Contacts"
                               else ("Code", "ItemID"))
        found = self._rows_where(collection, key_field, [
            str(body[key_field]) for _, w, body in bodies
            if w.link is None and w.write.after_unknown_outcome])
        for n, w, body in bodies:
            row = found.get(str(body[key_field]).casefold()) if w.link is None else None
            target = w.link.id if w.link is not None else (
                str(row[id_field]) if row is not None else None)
            if target is None:
                creates.elements.append((n, w, body))
            else:
                updates.elements.append((n, w, {id_field: target, **body}))
        return [r for r in (creates, updates) if r.elements]

    def _rows_where(self, collection: str, key_field: str, values: Sequence[str]
                    ) -> dict[str, dict[str, Any]]:
        """Records whose `key_field` is one of `values`, by that value case-folded."""
        found: dict[str, dict[str, Any]] = {}
        clauses: list[list[str]] = []
        size = 0
        for value in dict.fromkeys(values):
            clause = f"{key_field}=={translate.quote_where(value)}"
            if not clauses or size + len(clause) > _WHERE_CHARS:
                clauses.append([])
                size = 0
            clauses[-1].append(clause)
            size += len(clause) + 4
        extra = {"includeArchived": "true"} if collection == "Contacts" else {}
        for group in clauses:
            rows = self._get(collection, {"where": " OR ".join(group), **extra}
                             ).get(collection) or []
            for row in rows:
                found.setdefault(str(row.get(key_field, "")).casefold(), row)
        return found

    def _send_part(self, request: _PartRequest) -> dict[int, ProviderRecord | ProviderError]:
        collection = request.collection
        params = {"summarizeErrors": "false"}
        if collection == "Items":
            params["unitdp"] = "4"
        elements = [element for _, _, element in request.elements]
        response = self._http.request(
            request.method, f"{self._base}/{collection}", json={collection: elements},
            params=params, headers={"Idempotency-Key": batch_idempotency_key(
                [w.write.key for _, w, _ in request.elements], request.method, collection,
                elements)}, write=True)
        rows = _json(response).get(collection) or []
        key_field = "ContactNumber" if collection == "Contacts" else "Code"
        out: dict[int, ProviderRecord | ProviderError] = {}
        for i, (n, w, element) in enumerate(request.elements):
            row = rows[i] if i < len(rows) and isinstance(rows[i], dict) else None
            if row is None or (str(row.get(key_field, "")).casefold()
                               != str(element[key_field]).casefold()):
                # Xero answers the elements in the order sent; one missing or out of
                # place leaves that write's fate unknown.
                out[n] = UnknownOutcome(f"Xero's answer has no element for {key_field} "
                                        f"{element[key_field]}: it may have been applied")
                continue
            messages = _element_messages(row)
            if not messages and row.get("StatusAttributeString") != "ERROR":
                out[n] = (ProviderRecord(str(row["ContactID"])) if collection == "Contacts"
                          else self._remember_item(row, element))
                continue
            error = _validation_error(messages or ["the element was refused"], 400)
            if isinstance(error, _ContactNumberTaken) and request.method == "PUT":
                try:
                    out[n] = ProviderRecord(str(self._adopt_contact(
                        element, w.write, error)["ContactID"]))
                except ProviderError as exc:
                    out[n] = exc
                continue
            out[n] = error
        return out

    def _item_ref(self, item_id: str) -> ItemRef:
        ref = self._items.get(item_id)
        if ref is None:
            row = self._get_one("Items", item_id)
            if row is None:
                raise RecordNotFound(f"Xero has no item {item_id}")
            ref = ItemRef(str(row["Code"]), (row.get("SalesDetails") or {}).get("AccountCode"))
            self._items[item_id] = ref
        return ref

    # -- invoices -------------------------------------------------------------------

    def upsert_invoice(self, invoice: Invoice, customer: ProviderRecord,
                       items: Mapping[str, ProviderRecord], link: ProviderRecord | None,
                       write: WriteIntent,
                       taxes: Mapping[str, ProviderTaxRate] | None = None) -> ProviderRecord:
        refs = {bc_id: self._item_ref(rec.id) for bc_id, rec in items.items()}
        unmapped = sorted(bc_id for bc_id in {li.item_id for li in invoice.lines}
                          if bc_id in refs and not refs[bc_id].account_code)
        if unmapped:
            codes = ", ".join(f"{i} (Xero code {refs[i].code})" for i in unmapped)
            raise PermanentProviderError(
                f"invoice {invoice.number}: item {codes} has no income account in Xero "
                "(SalesDetails.AccountCode); map it to an income account in the setup wizard "
                "(step 3). Nothing was written to Xero.", code=ErrorCode.UNMAPPED_ITEM)
        plan = self._plan_taxes(invoice, taxes)
        line_taxes = [self._line_tax(invoice, p) for p in plan]
        body = translate.invoice_body(invoice, customer.id, refs, self._default_income_code(),
                                      line_taxes)
        rates = {p.code: p.rate for p in plan}
        predicted = translate.xero_totals(body, rates)
        assert predicted is not None  # every TaxType's rate is known
        if predicted[2] != invoice.total:
            raise XeroTotalMismatch(invoice, predicted[2], "", "nothing was written to Xero",
                                    _line_differences(invoice, plan,
                                                      translate.xero_lines(body, rates)))
        key = write.key
        current: dict[str, Any] | None = None
        if link is None and write.after_unknown_outcome:
            current = self._find_invoice(invoice.number)
            if current is not None:
                key = self._adopt_key(write)
        elif link is not None:
            current = self._get_one("Invoices", link.id)
            if current is None:
                raise RecordNotFound(f"Xero has no invoice {link.id}")
        # Xero computes some tax: stage the invoice as DRAFT, compare, then authorise.
        staged = body["Status"] == "AUTHORISED" and body["LineAmountTypes"] != "NoTax" and any(
            li.get("TaxAmount") is None for li in body["LineItems"])
        lines_written = True
        if current is None:
            first = {**body, "Status": "DRAFT"} if staged else body
            row = self._write("PUT", "Invoices", "Invoices", first, key, unitdp=True)
        else:
            update = dict(body)
            if Decimal(str(current.get("AmountPaid") or 0)) > 0 or current["Status"] == "PAID":
                # Lines of an invoice with payments cannot change: only the header.
                update = {k: body[k] for k in ("Reference", "DueDate") if k in body}
                lines_written = False
            elif body["Status"] == "DRAFT" and current["Status"] != "DRAFT":
                del update["Status"]  # an approved invoice cannot go back to draft
            elif staged and current["Status"] in ("DRAFT", "SUBMITTED"):
                update["Status"] = current["Status"]
            row = self._write("POST", f"Invoices/{current['InvoiceID']}", "Invoices", update,
                              key, unitdp=True)
        invoice_id = str(row["InvoiceID"])
        total = Decimal(str(row["Total"]))
        differs = _line_differences(invoice, plan, [
            (Decimal(str(li.get("LineAmount") or 0)), Decimal(str(li.get("TaxAmount") or 0)))
            for li in row.get("LineItems") or []]) if lines_written else []
        if total != invoice.total or differs:
            outcome = (self._withdraw(row, write) if lines_written else
                       f"Xero invoice {invoice_id} has payments, so its lines were not "
                       "changed; correct it in Xero")
            raise XeroTotalMismatch(invoice, total, invoice_id, outcome, differs)
        if staged and row.get("Status") in ("DRAFT", "SUBMITTED"):
            row = self._write("POST", f"Invoices/{invoice_id}", "Invoices",
                              {"InvoiceID": invoice_id, "Status": "AUTHORISED"},
                              f"{write.key}:authorise")
        return ProviderRecord(invoice_id, None, total)

    def _withdraw(self, row: Mapping[str, Any], write: WriteIntent) -> str:
        """Take a wrong invoice out of the books: delete a draft, void an approved one."""
        invoice_id = str(row["InvoiceID"])
        status = str(row.get("Status"))
        if status in ("DRAFT", "SUBMITTED"):
            target, done = "DELETED", (f"the {status.lower()} Xero invoice {invoice_id} was "
                                       "deleted (Status DELETED); nothing is live in Xero")
        elif status == "AUTHORISED":
            target, done = "VOIDED", (f"the Xero invoice {invoice_id} was voided (Status "
                                      "VOIDED); nothing is live in Xero")
        else:
            return f"the Xero invoice {invoice_id} is {status}; correct it in Xero"
        self._write("POST", f"Invoices/{invoice_id}", "Invoices",
                    {"InvoiceID": invoice_id, "Status": target}, f"{write.key}:withdraw")
        return done

    def _find_invoice(self, number: str) -> dict[str, Any] | None:
        rows = self._get("Invoices", {"InvoiceNumbers": number}).get("Invoices") or []
        for row in rows:
            if (row.get("Type") == "ACCREC" and row.get("Status") != "DELETED"
                    and str(row.get("InvoiceNumber", "")).casefold() == number.casefold()):
                return dict(row)
        return None

    def void_invoice(self, invoice: Invoice, link: ProviderRecord,
                     write: WriteIntent) -> ProviderRecord:
        current = self._get_one("Invoices", link.id)
        if current is None:
            raise RecordNotFound(f"Xero has no invoice {link.id}")
        status = current["Status"]
        if status not in ("VOIDED", "DELETED"):
            target = "DELETED" if status in ("DRAFT", "SUBMITTED") else "VOIDED"
            current = self._write("POST", f"Invoices/{link.id}", "Invoices",
                                  {"InvoiceID": link.id, "Status": target}, write.key)
        return ProviderRecord(str(current["InvoiceID"]), None, Decimal(str(current["Total"])))

    # -- payments -------------------------------------------------------------------

    def record_payment(self, payment: Payment, invoice: ProviderRecord,
                       customer: ProviderRecord, link: ProviderRecord | None,
                       write: WriteIntent) -> ProviderRecord:
        key = write.key
        if link is not None:
            if link.total is None or link.total == payment.amount:
                return link  # Xero payments cannot be edited; nothing to change
            # The amount changed: delete the old payment, then record the new one.
            self._delete_payment(link.id, f"{write.key}:delete")
            key = f"{write.key}:replace"
        elif write.after_unknown_outcome:
            found = self._find_payment(invoice.id, payment.id)
            if found is not None:
                return found
        body = translate.payment_body(payment, invoice.id,
                                      self._bank_account_code(payment.currency))
        row = self._write("PUT", "Payments", "Payments", body, key)
        return ProviderRecord(str(row["PaymentID"]), None, Decimal(str(row["Amount"])))

    def _delete_payment(self, payment_id: str, key: str) -> None:
        try:
            self._write("POST", f"Payments/{payment_id}", "Payments", {"Status": "DELETED"}, key)
        except RecordNotFound:
            pass
        except PermanentProviderError as exc:
            if "already been deleted" not in str(exc):
                raise

    def _find_payment(self, invoice_id: str, payment_id: str) -> ProviderRecord | None:
        current = self._get_one("Invoices", invoice_id)
        for p in (current or {}).get("Payments") or []:
            if translate.reference_has_payment(p.get("Reference"), payment_id):
                return ProviderRecord(str(p["PaymentID"]), None, Decimal(str(p["Amount"])))
        return None

    def _bank_account_code(self, currency: str) -> str:
        if self._bank_accounts is None:
            rows = self._get("Accounts", {"where": 'Type=="BANK"'}).get("Accounts") or []
            self._bank_accounts = [a for a in rows
                                   if a.get("Status", "ACTIVE") == "ACTIVE" and a.get("Code")]
        if not self._bank_accounts:
            raise PermanentProviderError("the Xero organisation has no bank account with a "
                                         "code to receive payments into",
                                         code=ErrorCode.VALIDATION_FAILED)
        same = [a for a in self._bank_accounts if a.get("CurrencyCode") == currency]
        return str((same or self._bank_accounts)[0]["Code"])

    # -- reference data -------------------------------------------------------------

    def list_tax_rates(self) -> list[ProviderTaxRate]:
        """The organisation's revenue tax rates (`GET /TaxRates`: TaxType, Name,
        EffectiveRate, TaxComponents[].IsCompound; X-oas). Rates that cannot be used on
        revenue accounts (CanApplyToRevenue false: INPUT2, GSTONIMPORTS ...) are left out:
        Xero refuses them on a sales line."""
        out = []
        for r in self._get("TaxRates").get("TaxRates") or []:
            if r.get("Status", "ACTIVE") != "ACTIVE" or r.get("CanApplyToRevenue") is False:
                continue
            rate = r.get("EffectiveRate", r.get("DisplayTaxRate"))
            if rate is None or not r.get("TaxType"):
                continue
            compound = any(c.get("IsCompound") for c in r.get("TaxComponents") or [])
            out.append(ProviderTaxRate(str(r["TaxType"]), str(r.get("Name") or r["TaxType"]),
                                       Decimal(str(rate)).normalize(), compound))
        self._tax_rates = {c.code: (c.name, c.rate or Decimal(0)) for c in out}
        self._tax_rates_at = time.monotonic()
        return out

    def _org_tax_rates(self, fresh: bool = False) -> dict[str, tuple[str, Decimal]]:
        if (fresh or self._tax_rates_at is None
                or time.monotonic() - self._tax_rates_at > TAX_RATES_TTL_S):
            self.list_tax_rates()
        return self._tax_rates

    def _plan_taxes(self, invoice: Invoice, taxes: Mapping[str, ProviderTaxRate] | None
                    ) -> list[_PlannedLine]:
        """The Xero tax type of every line, checked against BlueClerk's tax before
        anything is written: Xero's tax at that type's current rate (per line, 2 dp),
        in the currency's precision, must be BlueClerk's."""
        cur, mode = invoice.currency, invoice.tax_mode
        taxed = mode != "none" and any(li.taxed for li in invoice.lines)
        missing = [f"line {n} ({(li.description or li.item_id).strip()}: "
                   f"{_pct(li.tax_rate_percent)}, {li.tax_key})"
                   for n, li in enumerate(invoice.lines, start=1)
                   if taxed and li.taxed and li.tax_key not in (taxes or {})]
        if missing:
            raise PermanentProviderError(
                f"invoice {invoice.number}: no Xero tax type was given for "
                + "; ".join(missing) + ". Nothing was written to Xero. Map the tax rate in "
                "the setup wizard (step 3, taxes)", code=ErrorCode.UNMAPPED_TAX_RATE)
        fresh = False
        while True:
            org = self._org_tax_rates(fresh) if taxed else {}
            plan: list[_PlannedLine] = []
            problems: list[str] = []
            theirs_tax = Decimal(0)
            for n, li in enumerate(invoice.lines, start=1):
                ours = translate.line_tax(li.amount, li.tax_rate_percent, mode, cur)
                if mode == "none" or not li.taxed:
                    plan.append(_PlannedLine(n, li, NO_TAX, "No tax", Decimal(0), ours))
                    continue
                mapped = (taxes or {})[li.tax_key]
                known = org.get(mapped.code)
                p = _PlannedLine(n, li, mapped.code, known[0] if known else mapped.name,
                                 known[1] if known else Decimal(0), ours)
                plan.append(p)
                if known is None:
                    problems.append(
                        f"{p.label()} is taxed {_pct(li.tax_rate_percent)} by BlueClerk "
                        f"({li.tax_key}, tax {_shown(ours, cur)} {cur}) but its Xero tax type "
                        f"{mapped.code} ({mapped.name}) is not one of the organisation's "
                        "active tax rates for sales")
                    continue
                theirs = translate.xero_line_tax(translate.sent_line_amount(li), p.rate, mode)
                theirs_tax += theirs - ours
                if quantize_money(theirs, cur) != ours:
                    problems.append(
                        f"{p.label()} is taxed {_pct(li.tax_rate_percent)} by BlueClerk "
                        f"({li.tax_key}): tax {_shown(ours, cur)} {cur}; its Xero tax type "
                        f"{p.code} ({p.code_name}) is {_pct(p.rate)}: Xero's tax would be "
                        f"{_shown(theirs, cur)} {cur}")
            if not problems:
                return plan
            if fresh or not taxed:
                # Xero's total at its rates (inclusive prices: the total stays, the tax
                # inside it changes).
                theirs_total = invoice.total + (theirs_tax if mode == "exclusive" else 0)
                raise XeroTaxMismatch(invoice, theirs_total, problems)
            fresh = True  # the organisation's rates may have changed: read them again

    @staticmethod
    def _line_tax(invoice: Invoice, p: _PlannedLine) -> LineTax:
        """Xero computes a taxed line's tax; TaxAmount only where its figure is already
        known to be BlueClerk's (0 %, or a currency whose minor unit is not the cent)."""
        if invoice.tax_mode == "none":
            return LineTax(p.code)
        if p.rate == 0 or minor_unit(invoice.currency) != 2:
            return LineTax(p.code, p.ours_tax)
        return LineTax(p.code)

    def _default_income_code(self) -> str:
        """For lines whose item has no sales account: Sales (200) or the first revenue one."""
        if self._income_code is None:
            accounts = self.list_income_accounts()
            if not accounts:
                raise PermanentProviderError("the Xero organisation has no revenue account",
                                             code=ErrorCode.VALIDATION_FAILED)
            codes = [a.id for a in accounts]
            self._income_code = "200" if "200" in codes else codes[0]
        return self._income_code

    def list_customers(self) -> list[RemoteCustomer]:
        return [translate.remote_customer(c)
                for c in self._pages("Contacts", {"includeArchived": "true"})]

    def list_items(self) -> list[RemoteItem]:
        rows = self._get("Items", {"unitdp": "4"}).get("Items") or []
        return [translate.remote_item(i) for i in rows]

    def list_income_accounts(self) -> list[IncomeAccount]:
        rows = self._get("Accounts", {"where": 'Class=="REVENUE"'}).get("Accounts") or []
        return [IncomeAccount(str(a["Code"]), str(a.get("Name") or a["Code"]), str(a["Code"]))
                for a in rows if a.get("Code") and a.get("Status", "ACTIVE") == "ACTIVE"]

    # -- changes --------------------------------------------------------------------

    _FEEDS = (("customer", "Contacts", "ContactID", True),
              ("item", "Items", "ItemID", False),
              ("invoice", "Invoices", "InvoiceID", True),
              ("payment", "Payments", "PaymentID", True))

    def fetch_changes(self, since: dt.datetime) -> list[InboundChange]:
        """Records modified at or after `since` (to the second), oldest first."""
        since_utc = (since if since.tzinfo else since.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)
        floor = since_utc.replace(microsecond=0)
        headers = {"If-Modified-Since": floor.strftime("%Y-%m-%dT%H:%M:%S")}
        changes: list[InboundChange] = []
        for entity, collection, id_key, paged in self._FEEDS:
            params = {"includeArchived": "true"} if collection == "Contacts" else {}
            rows: Iterator[dict[str, Any]] | list[dict[str, Any]]
            if paged:
                rows = self._pages(collection, params, headers)
            else:
                rows = self._get(collection, params, headers).get(collection) or []
            for row in rows:
                changed = translate.parse_xero_date(row.get("UpdatedDateUTC"))
                if changed is None or changed < floor:
                    continue
                changes.append(_inbound(entity, str(row[id_key]), changed, row))
        have = {c.provider_id for c in changes if c.entity_type == "invoice"}
        for change in list(changes):  # a payment comes with its invoice's state after it
            invoice_id = getattr(change.snapshot, "invoice_provider_id", None)
            if change.entity_type != "payment" or not invoice_id or invoice_id in have:
                continue
            have.add(invoice_id)
            row = self._get_one("Invoices", invoice_id)
            if row is not None:
                changes.append(_inbound("invoice", invoice_id, change.changed_at, row))
        changes.sort(key=lambda c: c.changed_at)
        return changes


@dataclass(slots=True)
class _PartRequest:
    """One multi-element request: (index in the batch, the write, its element) each."""

    method: str  # PUT creates, POST updates
    collection: str  # Contacts | Items
    elements: list[tuple[int, BatchWrite, dict[str, Any]]] = field(default_factory=list)


def batch_idempotency_key(intent_keys: Sequence[str], method: str, collection: str,
                          elements: Sequence[Mapping[str, Any]]) -> str:
    """The Idempotency-Key of one multi-element request (<= 128 characters, X-oas): a
    digest of its writes' intent keys, so the same writes sent again within 6 minutes get
    Xero's stored answer, plus a digest of the exact request, since Xero refuses a key
    reused with another method, URL or body (X-idem) and a retry after a lookup may turn
    creates into updates."""
    writes = hashlib.sha256("\n".join(intent_keys).encode()).hexdigest()[:32]
    request = hashlib.sha256(json.dumps([method, collection, list(elements)], sort_keys=True,
                                        default=str).encode()).hexdigest()[:16]
    return f"bcb:{writes}:{request}"


def _inbound(entity: str, rid: str, changed: dt.datetime, row: dict[str, Any]
             ) -> InboundChange:
    """Xero keeps no creation time: a change is "updated" unless its status says voided
    or deleted; the poller tells created from updated by whether BlueClerk knew it."""
    from providers.xero import canonical

    return InboundChange(entity, rid, canonical.operation(entity, row) or "updated", changed,
                         row, canonical.snapshot(entity, row))
