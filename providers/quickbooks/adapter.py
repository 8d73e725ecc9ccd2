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
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
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
from providers.quickbooks import translate
from providers.ratelimit import Limiter, give_back
from providers.taxes import ProviderTaxRate
from schemas.error_codes import ErrorCode
from schemas.money import quantize_money
from schemas.records import Address, Customer, Invoice, InvoiceLine, Item, Payment

__all__ = [
    "QuickBooksAdapter",
    "QuickBooksTaxMismatch",
    "batch_request_id",
    "classify_batch_fault",
    "classify_quickbooks_error",
]

MINOR_VERSION = "75"
PAGE_SIZE = 1000  # QuickBooks' MAXRESULTS ceiling
# Operations in one `batch` call: Intuit's limits page recommends at most 30 payloads per
# batch (IQ-lim; the batch page's older "up to 10" is superseded), and QuickBooks refuses
# more than 30 (QuickBooks-V3-DotNET-SDK #358, tested against the API).
BATCH_SIZE = 30
# A query's WHERE ... IN (...) list is cut so the statement stays a modest URL.
_IN_LIST_CHARS = 3000
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
    return _classify_fault(status, fault_type, errors)


def _classify_fault(status: int, fault_type: str,
                    errors: Sequence[Mapping[str, Any]]) -> ProviderError | None:
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


# The HTTP status a lone request would have had for each Fault type: a batch answers 200
# and carries each item's Fault inside (IQ-err), without a status of its own.
_FAULT_STATUS = {"validationfault": 400, "systemfault": 500, "authenticationfault": 401,
                 "authorizationfault": 403, "authorizatonfault": 403}


def classify_batch_fault(fault: Mapping[str, Any]) -> ProviderError:
    """One ``BatchItemResponse`` item's ``Fault``, classified as the same Fault answered to
    a lone request would be (6240 DuplicateName, 5010 StaleVersion, 610 RecordNotFound ...)."""
    fault_type = str(fault.get("type", ""))
    errors = [e for e in fault.get("Error") or fault.get("error") or []
              if isinstance(e, Mapping)]
    status = _FAULT_STATUS.get(fault_type.lower(), 400)
    return _classify_fault(status, fault_type, errors) or PermanentProviderError(
        f"QuickBooks refused the batch item ({fault_type}): {errors[:1]}", status=status)


def _shown(amount: Decimal, currency: str) -> str:
    """An amount in the currency's own precision (9.99 GBP, 259 JPY, 25.206 KWD)."""
    return f"{quantize_money(amount, currency)} {currency}"


def _pct(value: Decimal) -> str:
    return f"{value.normalize():f}%"


class QuickBooksTaxMismatch(TotalMismatch):
    """QuickBooks' tax (computed by QuickBooks outside the US) differs from BlueClerk's:
    the message names each line (or rate) and both figures, and what was left in the books."""

    def __init__(self, invoice: Invoice, theirs: Decimal, provider_id: str, details: str,
                 outcome: str, code: ErrorCode = ErrorCode.TOTAL_MISMATCH) -> None:
        cur = invoice.currency
        PermanentProviderError.__init__(
            self, f"invoice {invoice.number}: {details}; BlueClerk total "
                  f"{_shown(invoice.total, cur)}, QuickBooks total {_shown(theirs, cur)}; "
                  f"{outcome}", code=code)
        self.ours, self.theirs, self.provider_id = invoice.total, theirs, provider_id
        self.outcome = outcome


def _tax_line_text(tax_line: dict[str, Any], currency: str) -> str:
    """One ``TxnTaxDetail.TaxLine``: "20.0% S 10.01 GBP on 50.03 GBP"."""
    detail = tax_line.get("TaxLineDetail") or {}
    name = (detail.get("TaxRateRef") or {}).get("name", "?")
    amount = Decimal(str(tax_line.get("Amount", 0)))
    net = Decimal(str(detail.get("NetAmountTaxable", 0)))
    return f"{name} {_shown(amount, currency)} on {_shown(net, currency)}"


def _line_label(n: int, line: InvoiceLine) -> str:
    text = (line.description or line.item_id or "").strip()
    return f"line {n} ({text})" if text else f"line {n}"


class QuickBooksAdapter:
    name = "quickbooks"

    batch_size = BATCH_SIZE

    def __init__(self, http: ProviderHttp, api_base: str, realm_id: str,
                 batch_limiter: Limiter | None = None) -> None:
        """`batch_limiter` holds QuickBooks' own limit on `batch` calls (40 a minute per
        realm and app, IQ-lim), taken in addition to the connection's limiter that `http`
        applies to every request."""
        self._http = http
        self._batch_limiter = batch_limiter
        self._realm = realm_id
        self._base = f"{api_base.rstrip('/')}/{realm_id}"
        self._undeposited: str | None = None
        self._country: str | None = None

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
            return self._retry_stale(entity, update, write)

    def _retry_stale(self, entity: str, update: dict[str, Any],
                     write: WriteIntent) -> dict[str, Any]:
        """Someone edited the record in QuickBooks: re-read its SyncToken, retry once."""
        current = self._get(entity, str(update["Id"]))
        return self._post(entity, {**update, "SyncToken": str(current["SyncToken"])},
                          WriteIntent(write.key[:44] + "-stale"))

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
        update = _customer_update(customer, body, current)
        try:
            return self._post("Customer", update, write)
        except PermanentProviderError as exc:
            if "Active" not in update or not _has_balance_refusal(exc):
                raise
        raise self._balance_refusal(customer, update, current, write)

    def _balance_refusal(self, customer: Customer, update: dict[str, Any],
                         current: Mapping[str, Any], write: WriteIntent
                         ) -> PermanentProviderError:
        """QuickBooks will not make a customer with an open balance inactive: save the
        other changes, then fail permanently with what to do."""
        rest = {k: v for k, v in update.items() if k != "Active"}
        saved = self._post("Customer", rest, WriteIntent(write.key[:44] + "-keep"))
        balance = saved.get("Balance", current.get("Balance", "?"))
        return PermanentProviderError(
            f"QuickBooks refused to make customer {saved.get('DisplayName', rest['Id'])!r} "
            f"(Id {rest['Id']}) inactive because it has an open balance of {balance} "
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

    # -- batched writes -------------------------------------------------------------

    def write_batch(self, writes: Sequence[BatchWrite]
                    ) -> list[ProviderRecord | ProviderError]:
        """One `batch` call per 30 writes (IQ-batch, providers.md 1.5), each item built and
        its Fault classified as the single-record path does. Before the call, one query per
        kind finds what the writes need: linked customers' current SyncToken and Active
        (the single path reads each one), and the records of writes after an unknown
        outcome (by DisplayName / Name, as the single path looks them up), which are then
        updated instead of created. Follow-ups the single path makes on a refusal (6240:
        who holds the name; 5010: re-read, retry once; a balance refusal: save the rest)
        are made per item."""
        return _in_requests(writes, BATCH_SIZE, self._write_part)

    def _write_part(self, part: Sequence[BatchWrite]) -> list[ProviderRecord | ProviderError]:
        unknown_names: list[str] = []
        unknown_items: list[str] = []
        linked: list[str] = []
        for w in part:
            if isinstance(w.record, Customer) and w.link is not None:
                linked.append(w.link.id)
            elif isinstance(w.record, Customer) and w.write.after_unknown_outcome:
                unknown_names.append(translate.display_name(w.record))
            elif (isinstance(w.record, Item) and w.link is None
                  and w.write.after_unknown_outcome):
                unknown_items.append(str(translate.item_body(w.record, None)["Name"]))
        by_name = self._rows_in("Customer", "DisplayName", unknown_names, any_status=True)
        items_by_name = self._rows_in("Item", "Name", unknown_items, any_status=False)
        current_by_id = self._rows_in("Customer", "Id", linked, any_status=True)

        planned: list[_BatchItem | ProviderError] = []
        for w in part:
            if isinstance(w.record, Customer):
                body = translate.customer_body(w.record)
                current = (current_by_id.get(w.link.id.casefold()) if w.link is not None
                           else by_name.get(str(body["DisplayName"]).casefold()))
                if w.link is not None and current is None:
                    planned.append(RecordNotFound(f"QuickBooks has no customer {w.link.id}"))
                elif current is None:
                    planned.append(_BatchItem(w, "Customer", "create", body))
                else:
                    planned.append(_BatchItem(w, "Customer", "update",
                                              _customer_update(w.record, body, current),
                                              current))
            else:
                body = translate.item_body(w.record, w.income_account_id)
                found = (items_by_name.get(str(body["Name"]).casefold())
                         if w.link is None else None)
                link = w.link or (self._record(found) if found is not None else None)
                if link is None:
                    planned.append(_BatchItem(w, "Item", "create", body))
                else:
                    planned.append(_BatchItem(w, "Item", "update", {
                        **body, "Id": link.id, "SyncToken": link.version or "0",
                        "sparse": True}))
        # bId = the write's place in this part: stable when a retry sends the same writes
        # with the same requestid and QuickBooks answers with the stored response.
        requests = [{"bId": str(n), "operation": p.operation, p.entity: p.payload}
                    for n, p in enumerate(planned, start=1) if isinstance(p, _BatchItem)]
        answers: dict[str, Mapping[str, Any]] = {}
        if requests:
            answers = self._send_batch(requests, batch_request_id(part))
        outcomes: list[ProviderRecord | ProviderError] = []
        for n, p in enumerate(planned, start=1):
            if not isinstance(p, _BatchItem):
                outcomes.append(p)
                continue
            answer = answers.get(str(n))
            if answer is None:
                outcomes.append(UnknownOutcome(
                    f"QuickBooks' batch answer has no item bId {n}: the write may have been "
                    "applied"))
            elif isinstance(answer.get(p.entity), Mapping):
                outcomes.append(self._record(dict(answer[p.entity])))
            else:
                outcomes.append(self._after_fault(p, classify_batch_fault(
                    answer.get("Fault") or {})))
        return outcomes

    def _send_batch(self, requests: list[dict[str, Any]], request_id: str
                    ) -> dict[str, Mapping[str, Any]]:
        # Each batch call takes one slot of the connection's limiter (500 requests a
        # minute per realm "including batch requests", Intuit blog 2016-08-08; Intuit
        # recommends batching to stay under that limit, so a batch is one request there)
        # and one of the batch limiter (40 batch calls a minute per realm and app, IQ-lim).
        # ASSUMPTION: no Intuit page says how a batch's operations count against the
        # 500/min; Intuit's SampleApp-Batch-Java tutorial says each item "is metered like a
        # normal call", which reads as billing (CorePlus metering), not throttling.
        if self._batch_limiter is not None:
            self._batch_limiter.acquire()
        try:
            response = self._http.request(
                "POST", f"{self._base}/batch", json={"BatchItemRequest": requests},
                params={"minorversion": MINOR_VERSION, "requestid": request_id}, write=True)
        except Throttled as exc:
            if self._batch_limiter is not None:
                if exc.status is None:  # our connection limiter stopped it: never sent
                    give_back(self._batch_limiter)
                else:
                    self._batch_limiter.release()
            raise
        except BaseException:
            if self._batch_limiter is not None:
                self._batch_limiter.release()
            raise
        if self._batch_limiter is not None:
            self._batch_limiter.release()
        answers = response.json().get("BatchItemResponse") or []
        return {str(a.get("bId")): a for a in answers if isinstance(a, Mapping)}

    def _after_fault(self, item: _BatchItem, error: ProviderError
                     ) -> ProviderRecord | ProviderError:
        """What the single-record path does after the same refusal."""
        write, payload = item.write, item.payload
        try:
            if isinstance(error, StaleVersion) and item.operation == "update":
                return self._record(self._retry_stale(item.entity, payload, write.write))
            if item.entity == "Customer" and isinstance(write.record, Customer):
                if isinstance(error, DuplicateName) and item.operation == "create":
                    return self._duplicate_customer_name(str(payload["DisplayName"]),
                                                         write.write, error)
                if ("Active" in payload and item.current is not None
                        and _has_balance_refusal(error)):
                    return self._balance_refusal(write.record, payload, item.current,
                                                 write.write)
        except ProviderError as exc:
            return exc
        return error

    def _rows_in(self, entity: str, field: str, values: Sequence[str],
                 any_status: bool) -> dict[str, dict[str, Any]]:
        """Rows whose `field` is one of `values`, by the field's value case-folded (the
        first row of each), in as few queries as keep each statement short."""
        found: dict[str, dict[str, Any]] = {}
        groups: list[list[str]] = []
        size = 0
        for value in dict.fromkeys(values):
            literal = translate.quote_query_literal(value)
            if not groups or size + len(literal) > _IN_LIST_CHARS:
                groups.append([])
                size = 0
            groups[-1].append(literal)
            size += len(literal) + 2
        for group in groups:
            where = f" WHERE {field} IN ({', '.join(group)})"
            if any_status:
                where += " AND Active IN (true, false)"
            rows = self.query(f"SELECT * FROM {entity}{where} MAXRESULTS {PAGE_SIZE}"
                              ).get(entity, [])
            for row in rows:
                found.setdefault(str(row.get(field, "")).casefold(), row)
        return found

    def upsert_invoice(self, invoice: Invoice, customer: ProviderRecord,
                       items: Mapping[str, ProviderRecord], link: ProviderRecord | None,
                       write: WriteIntent,
                       taxes: Mapping[str, ProviderTaxRate] | None = None) -> ProviderRecord:
        item_ids = {k: v.id for k, v in items.items()}
        if not self._is_us():
            return self._upsert_global_invoice(invoice, customer.id, item_ids, link, write,
                                               taxes)
        # US, automated sales tax: TAX/NON per line, BlueClerk's tax sent as the amount.
        codes = None if taxes is None else {k: v.code for k, v in taxes.items()}
        body = translate.invoice_body(invoice, customer.id, item_ids, codes)
        entity = self._upsert("Invoice", body, link, write, ("DocNumber", body["DocNumber"]))
        record = self._record(entity)
        if record.total is not None and record.total != invoice.total:
            # Amounts in the currency's own precision (259 JPY, 25.206 KWD), not the
            # transport scale.
            raise TotalMismatch(quantize_money(invoice.total, invoice.currency),
                                quantize_money(record.total, invoice.currency),
                                invoice.currency, record.id)
        return record

    # -- companies outside the US -----------------------------------------------------

    def _is_us(self) -> bool:
        """US companies use automated sales tax (TAX/NON); every other country the
        company's own TaxCodes (`CompanyInfo.Country`, as in minimul/qbo_api #85)."""
        if self._country is None:
            response = self._http.request(
                "GET", f"{self._base}/companyinfo/{self._realm}",
                params={"minorversion": MINOR_VERSION})
            info = response.json().get("CompanyInfo") or {}
            self._country = str(info.get("Country") or "US").upper()
        return self._country in ("US", "USA")

    def _tax_codes(self) -> dict[str, translate.QboTaxCode]:
        """The company's TaxCodes with their current rates, read for every invoice (a rate
        can change in QuickBooks at any time)."""
        return translate.tax_codes(self._query_all("TaxCode"), self._query_all("TaxRate"))

    @staticmethod
    def _untaxed_code(codes: Mapping[str, translate.QboTaxCode]
                      ) -> translate.QboTaxCode | None:
        """The code for BlueClerk's untaxed lines: the zero-rated code (a TaxRate with
        SpecialTaxType ZERO_RATE, or named zero/free: "0.0% Z", "Zero-rated", "GST free"),
        else "Exempt", else any 0% code; the lowest Id wins a tie."""
        zero = [c for c in sorted(codes.values(), key=lambda c: (len(c.id), c.id))
                if c.active and c.percent == 0]
        for test in (lambda c: c.zero_kind == "ZERO_RATE",
                     lambda c: any(w in c.name.casefold() for w in ("zero", "free", "% z")),
                     lambda c: "exempt" in c.name.casefold(),
                     lambda c: True):
            found = [c for c in zero if test(c)]
            if found:
                return found[0]
        return None

    def _line_codes(self, invoice: Invoice, taxes: Mapping[str, ProviderTaxRate] | None,
                    codes: Mapping[str, translate.QboTaxCode]) -> list[translate.QboTaxCode]:
        """The company's code for each line, or a refusal naming the line."""
        untaxed = (codes.get(taxes["none"].code) if taxes and "none" in taxes
                   else self._untaxed_code(codes))
        out: list[translate.QboTaxCode] = []
        problems: list[str] = []
        for n, line in enumerate(invoice.lines, start=1):
            if invoice.tax_mode == "none" or not line.taxed:
                if untaxed is None:
                    problems.append(f"{_line_label(n, line)} is untaxed but the company has "
                                    "no zero-rated or exempt tax code")
                    continue
                out.append(untaxed)
                continue
            mapped = (taxes or {}).get(line.tax_key)
            code = codes.get(mapped.code) if mapped is not None else None
            label = line.tax_rate_name or "tax rate"
            if mapped is None:
                problems.append(f"{_line_label(n, line)}: {label} "
                                f"{_pct(line.tax_rate_percent)} ({line.tax_key}) has no "
                                "QuickBooks tax code mapped")
            elif code is None or not code.active:
                problems.append(f"{_line_label(n, line)}: {label} ({line.tax_key}) is mapped "
                                f"to QuickBooks tax code {mapped.name} (Id {mapped.code}), "
                                "which the company no longer has (or is inactive)")
            else:
                out.append(code)
        if problems:
            raise PermanentProviderError(
                f"invoice {invoice.number}: " + "; ".join(problems) + ". Map the rate in the "
                "setup wizard, step 3 (taxes); nothing was written to QuickBooks.",
                status=400, code=ErrorCode.UNMAPPED_TAX_RATE)
        return out

    def _upsert_global_invoice(self, invoice: Invoice, customer_id: str,
                               item_ids: Mapping[str, str], link: ProviderRecord | None,
                               write: WriteIntent,
                               taxes: Mapping[str, ProviderTaxRate] | None) -> ProviderRecord:
        cur = invoice.currency
        codes = self._line_codes(invoice, taxes, self._tax_codes())
        ours = translate.blueclerk_line_taxes(invoice)
        nets = [line.amount - tax if invoice.tax_mode == "inclusive" else line.amount
                for line, tax in zip(invoice.lines, ours, strict=True)]
        theirs = [translate.predict_line_tax(code, net, cur) for code, net in zip(
            codes, nets, strict=True)]
        predicted_total = sum(nets, Decimal(0)) + sum(theirs, Decimal(0))
        # A rate that is not the code's rate is a mapping to fix, whatever the figures.
        wrong_rate = [
            f"{_line_label(n, line)}: BlueClerk charges {line.tax_rate_name or 'tax'} "
            f"{_pct(line.tax_rate_percent)} ({line.tax_key}) but it is mapped to QuickBooks "
            f"tax code {code.name} (Id {code.id}) at {_pct(code.percent)}: BlueClerk tax "
            f"{_shown(mine, cur)}, QuickBooks would compute {_shown(qbo, cur)}"
            for n, (line, code, mine, qbo) in enumerate(
                zip(invoice.lines, codes, ours, theirs, strict=True), start=1)
            if invoice.tax_mode != "none" and line.taxed and code.percent != line.tax_rate_percent]
        if wrong_rate:
            raise QuickBooksTaxMismatch(
                invoice, predicted_total, "", "; ".join(wrong_rate),
                "map the BlueClerk rate to a QuickBooks code at its rate in the setup wizard, "
                "step 3 (taxes), then send the invoice again; nothing was written to "
                "QuickBooks", code=ErrorCode.UNMAPPED_TAX_RATE)
        wrong_tax = [
            f"{_line_label(n, line)} at {code.name}: BlueClerk tax {_shown(mine, cur)}, "
            f"QuickBooks would compute {_shown(qbo, cur)} ({_pct(code.percent)} of the "
            f"tax-exclusive {_shown(net, cur)}, rounded on the line)"
            for n, (line, code, mine, qbo, net) in enumerate(
                zip(invoice.lines, codes, ours, theirs, nets, strict=True), start=1)
            if mine != qbo]
        if wrong_tax or predicted_total != invoice.total:
            details = "; ".join(wrong_tax) or (
                f"the lines' tax-exclusive amounts and tax add up to "
                f"{_shown(predicted_total, cur)}")
            raise QuickBooksTaxMismatch(invoice, predicted_total, "", details,
                                        "nothing was written to QuickBooks")
        body = translate.global_invoice_body(invoice, customer_id, item_ids,
                                             [c.id for c in codes], nets)
        entity = self._upsert("Invoice", body, link, write, ("DocNumber", body["DocNumber"]))
        record = self._record(entity)
        book_tax = Decimal(str((entity.get("TxnTaxDetail") or {}).get("TotalTax", "0")))
        if record.total == invoice.total and book_tax == invoice.tax_total:
            return record
        # QuickBooks computed otherwise than predicted: leave nothing wrong in the books.
        by_rate = "; ".join(_tax_line_text(t, cur) for t in
                            (entity.get("TxnTaxDetail") or {}).get("TaxLine") or [])
        details = (f"QuickBooks computed tax {_shown(book_tax, cur)} "
                   f"({by_rate or 'no tax lines'}) where BlueClerk's is "
                   f"{_shown(invoice.tax_total, cur)} (by line: "
                   + ", ".join(f"line {n} {_shown(t, cur)}" for n, t in enumerate(ours, 1))
                   + ")")
        outcome = self._undo(record, created=link is None, write=write)
        raise QuickBooksTaxMismatch(invoice, record.total or Decimal(0), record.id, details,
                                    outcome)

    def _undo(self, record: ProviderRecord, created: bool, write: WriteIntent) -> str:
        """Take a wrong invoice out of the books: a new one is deleted, an updated one (which
        may carry history) voided."""
        operation, done = ("delete", "deleted") if created else ("void", "voided")
        try:
            self._post("Invoice", {"Id": record.id, "SyncToken": record.version or "0"},
                       WriteIntent(write.key[:44] + "-undo"), operation=operation)
        except ProviderError as exc:
            return (f"the invoice (Id {record.id}) could not be {done} in QuickBooks "
                    f"({exc}); correct or void it there")
        return (f"the invoice QuickBooks saved (Id {record.id}) was {done}, so nothing "
                "wrong is left in the books")

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
        """US (automated sales tax): QuickBooks assigns the rates and computes the tax, so
        one code (TAX) serves every taxed line and NON every 0% one (Intuit, "Manage sales
        tax for US locales"). Elsewhere: the company's active sales TaxCodes, each with its
        rates from TaxRate (a code of several rates at their sum; compound when one applies
        to the amount plus tax)."""
        if self._is_us():
            return [ProviderTaxRate("TAX", "Automated sales tax", None, kind="automated"),
                    ProviderTaxRate("NON", "Non-taxable", Decimal(0))]
        return [ProviderTaxRate(c.id, c.name, c.percent, c.compound)
                for c in sorted(self._tax_codes().values(), key=lambda c: (len(c.id), c.id))
                if c.active]

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
        return _with_paid_invoices(changes, lambda iid: self._get("Invoice", iid))


@dataclass(frozen=True, slots=True)
class _BatchItem:
    write: BatchWrite
    entity: str  # Customer | Item
    operation: str  # create | update
    payload: dict[str, Any]
    current: Mapping[str, Any] | None = None  # the customer as read before an update


def batch_request_id(writes: Sequence[BatchWrite]) -> str:
    """The ``requestid`` of one batch call (at most 36 characters for batch, IQ-rid): a
    digest of its writes' intent keys in order, so the same writes sent again are answered
    with QuickBooks' stored response instead of being executed twice."""
    digest = hashlib.sha256("\n".join(w.write.key for w in writes).encode()).hexdigest()
    return f"bcb-{digest[:32]}"


def _in_requests(writes: Sequence[BatchWrite], size: int,
                 send: Callable[[Sequence[BatchWrite]], list[ProviderRecord | ProviderError]]
                 ) -> list[ProviderRecord | ProviderError]:
    """`send` each part of at most `size` writes in turn. A part that fails as a whole
    raises when no write has an outcome yet; after that its writes carry its error and
    the writes never sent carry `_not_sent`, so the outcomes already known are kept."""
    outcomes: list[ProviderRecord | ProviderError] = []
    for start in range(0, len(writes), size):
        part = writes[start:start + size]
        try:
            outcomes.extend(send(part))
        except ProviderError as exc:
            if not outcomes:
                raise
            outcomes.extend([exc] * len(part))
            outcomes.extend([not_sent(exc)] * (len(writes) - start - len(part)))
            break
    return outcomes


def _customer_update(customer: Customer, body: Mapping[str, Any],
                     current: Mapping[str, Any]) -> dict[str, Any]:
    """Sparse update of the customer read as `current`; ``Active`` only when it changes."""
    update = {k: v for k, v in body.items() if k != "Active"}
    update |= {"Id": str(current["Id"]), "SyncToken": str(current["SyncToken"]),
               "sparse": True}
    if bool(current.get("Active", True)) != customer.active:
        update["Active"] = customer.active
    return update


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
    from providers.quickbooks import canonical

    meta = row.get("MetaData") or {}
    changed = meta.get("LastUpdatedTime") or dt.datetime.now(dt.UTC).isoformat()
    kind = entity.lower()
    return InboundChange(kind, str(row["Id"]), canonical.operation(kind, row) or "updated",
                         dt.datetime.fromisoformat(str(changed).replace("Z", "+00:00")), row,
                         canonical.snapshot(kind, row))


def _with_paid_invoices(changes: list[InboundChange],
                        read: Callable[[str], dict[str, Any]]) -> list[InboundChange]:
    """A payment always comes with its invoice's state after it: an invoice a changed
    payment applies to, and that is not in the feed, is read and added as changed then."""
    have = {c.provider_id for c in changes if c.entity_type == "invoice"}
    for change in list(changes):
        invoice_id = getattr(change.snapshot, "invoice_provider_id", None)
        if change.entity_type != "payment" or not invoice_id or invoice_id in have:
            continue
        have.add(invoice_id)
        try:
            row = read(invoice_id)
        except ProviderError:
            continue
        added = _inbound("Invoice", row)
        changes.append(InboundChange("invoice", invoice_id, added.operation, change.changed_at,
                                     row, added.snapshot))
    return changes
