"""The simulated QuickBooks companies (realms) and the rules for writing to them.

Money arithmetic (documented choices; QuickBooks does not publish its own):
- All amounts are ``Decimal`` internally; JSON floats in requests are parsed as Decimal.
- Each line ``Amount`` is rounded half-up to the currency's minor unit (JPY 0, USD 2, KWD 3;
  see ``MINOR_UNITS``). When ``Qty`` and ``UnitPrice`` are both given, ``Amount`` must equal
  ``round_half_up(Qty * UnitPrice)`` (after rounding the supplied Amount the same way) or the
  line is refused with code 6070; if ``Amount`` is omitted it is computed that way.
- The subtotal is the sum of the rounded line amounts. A percent discount is
  ``round_half_up(subtotal * DiscountPercent / 100)``; a fixed discount is its rounded Amount.
- A line ``Amount`` is always tax-EXCLUSIVE (Finance.xsd, ``SalesItemLineDetail.TaxInclusiveAmt``:
  the inclusive figure has its own element). ``TxnTaxDetail.TotalTax`` is honoured when given
  (rounded half-up); otherwise, with ``TaxInclusive``, tax is the sum over lines of
  ``TaxInclusiveAmt - Amount`` (rounded), and 0 in every other case: the simulator has no
  sales-tax engine. ``TaxExcluded`` (the default) and ``TaxInclusive`` alike: TotalAmt =
  subtotal - discount + tax. ``NotApplicable``: tax is 0. A ``TaxInclusiveAmt`` below the
  line's ``Amount`` is refused (6000).
- ``Balance = TotalAmt - sum(applied payment line amounts)``. In a foreign currency
  ``HomeTotalAmt``/``HomeBalance`` = amount * ExchangeRate rounded half-up to the home
  currency's minor unit; ExchangeRate defaults to 1 when not given.

Record rules (also documented choices):
- Update = body with ``Id``; ``SyncToken`` must equal the current one (else 5010). With
  ``"sparse": true`` only the top-level fields sent change (arrays such as ``Line`` and nested
  objects such as ``BillAddr`` are replaced whole); without it every writable field that is not
  sent is cleared -- except ``CurrencyRef`` (customer), ``DocNumber`` and ``TxnDate``, which
  keep their values, as QuickBooks cannot blank them either.
- Names are unique, compared trimmed and case-insensitively, inactive records included; ``:``
  is refused. ``DisplayName`` is unique across Customer, Vendor and Employee together
  (6240, QuickBooks-V3-PHP-SDK #241); Item ``Name`` and Account ``Name`` per list.
- A customer with a non-zero ``Balance`` cannot be made inactive (quickbooks-ruby #390).
- A create/update body with a top-level property the entity does not have in Intuit's XSD
  (``schema.py``) is refused with 2010; so is an unknown ``SalesItemLineDetail`` property.
- Customers, items and accounts cannot be deleted (make them inactive); invoices and payments
  can be deleted or voided; an invoice with an applied payment can be neither (code 6000).
- Applying a payment changes the invoice's ``Balance`` and ``LinkedTxn`` and bumps its
  ``SyncToken``; customer ``Balance`` follows without a SyncToken change.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from sandbox.quickbooks import errors
from sandbox.quickbooks.errors import QBOFault
from sandbox.quickbooks.query import COMPANY_TZ, ENTITIES, NAME_LIST, evaluate, parse_query
from sandbox.quickbooks.schema import ATTRIBUTES, PROPERTIES
from sandbox.quickbooks.tax import REGIONS, US_CODES, line_taxes

__all__ = [
    "ENTITY_BY_PATH",
    "MINOR_UNITS",
    "Books",
    "Realm",
    "plain",
    "round_money",
    "stamp",
]

JSON = dict[str, Any]

ENTITY_BY_PATH = {name.lower(): name for name in ENTITIES}

MINOR_UNITS: dict[str, int] = {
    "JPY": 0, "KRW": 0, "VND": 0, "CLP": 0, "ISK": 0, "XAF": 0, "XOF": 0, "UGX": 0,
    "KWD": 3, "BHD": 3, "OMR": 3, "JOD": 3, "TND": 3, "IQD": 3, "LYD": 3,
}
CURRENCY_NAMES = {
    "USD": "United States Dollar", "EUR": "Euro", "GBP": "British Pound Sterling",
    "CAD": "Canadian Dollar", "AUD": "Australian Dollar", "JPY": "Japanese Yen",
    "KWD": "Kuwaiti Dinar",
}

ITEM_TYPES = {
    "Assembly", "Category", "Fixed Asset", "Group", "Inventory", "NonInventory",
    "Other Charge", "Payment", "Service", "Subtotal", "Discount", "Tax", "Tax Group", "Bundle",
}  # ItemTypeEnum, Finance.xsd
CREATABLE_ITEM_TYPES = {"Service", "NonInventory", "Inventory", "Category"}
GLOBAL_TAX = {"TaxExcluded", "TaxInclusive", "NotApplicable"}  # GlobalTaxCalculationEnum
ACCOUNT_CLASSIFICATION = {  # AccountTypeEnum -> AccountClassificationEnum, Finance.xsd
    "Bank": "Asset", "Accounts Receivable": "Asset", "Other Current Asset": "Asset",
    "Fixed Asset": "Asset", "Other Asset": "Asset", "Accounts Payable": "Liability",
    "Credit Card": "Liability", "Other Current Liability": "Liability",
    "Long Term Liability": "Liability", "Equity": "Equity", "Income": "Revenue",
    "Cost of Goods Sold": "Expense", "Expense": "Expense", "Other Income": "Revenue",
    "Other Expense": "Expense", "Non-Posting": "Asset",
}
LINE_DETAIL_TYPES = {
    "PaymentLineDetail", "DiscountLineDetail", "TaxLineDetail", "SalesItemLineDetail",
    "ItemBasedExpenseLineDetail", "AccountBasedExpenseLineDetail", "DepositLineDetail",
    "PurchaseOrderItemLineDetail", "ItemReceiptLineDetail", "JournalEntryLineDetail",
    "GroupLineDetail", "DescriptionOnly", "SubTotalLineDetail", "SalesOrderItemLineDetail",
    "TDSLineDetail", "ReimburseLineDetail", "ItemAdjustmentLineDetail",
}  # LineDetailTypeEnum, Finance.xsd

UNDEPOSITED_FUNDS = "4"
DISCOUNT_ACCOUNT = "86"
DEFAULT_ACCOUNTS: list[tuple[str, str, str, str]] = [  # Id, Name, AccountType, AccountSubType
    ("1", "Services", "Income", "ServiceFeeIncome"),
    ("4", "Undeposited Funds", "Other Current Asset", "UndepositedFunds"),
    ("35", "Checking", "Bank", "Checking"),
    ("79", "Sales of Product Income", "Income", "SalesOfProductIncome"),
    ("83", "Other Income", "Other Income", "OtherMiscellaneousIncome"),
    ("84", "Accounts Receivable (A/R)", "Accounts Receivable", "AccountsReceivable"),
    ("86", "Discounts given", "Income", "DiscountsRefundsGiven"),
]

READ_ONLY_COMMON = {"Id", "SyncToken", "MetaData", "sparse", "domain", "status"}
READ_ONLY: dict[str, set[str]] = {
    "Customer": {"FullyQualifiedName", "Balance", "BalanceWithJobs"},
    "Item": {"FullyQualifiedName"},
    "Account": {"FullyQualifiedName", "CurrentBalance", "CurrentBalanceWithSubAccounts"},
    "Invoice": {"TotalAmt", "Balance", "HomeTotalAmt", "HomeBalance", "LinkedTxn"},
    "Payment": {"UnappliedAmt"},
    "Vendor": {"FullyQualifiedName", "Balance"},
    "Employee": {"FullyQualifiedName"},
    "TaxCode": set(),
    "TaxRate": set(),
}
# Read-only through the API (QuickBooks creates them with its TaxService); seedable.
TAX_ENTITIES = ("TaxRate", "TaxCode")


# --------------------------------------------------------------------------- helpers


def id_key(ident: str) -> tuple[int, int, str]:
    return (0, int(ident), "") if ident.isdigit() else (1, 0, ident)


def stamp(epoch: float) -> str:
    """QuickBooks-style timestamp: company-local time with offset, whole seconds."""
    return datetime.fromtimestamp(int(epoch), COMPANY_TZ).isoformat(timespec="seconds")


def response_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, COMPANY_TZ).isoformat(timespec="milliseconds")


def minor_units(currency: str) -> int:
    return MINOR_UNITS.get(currency, 2)


def round_money(value: Decimal, places: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def plain(obj: Any) -> Any:
    """Deep copy with Decimals turned into JSON numbers."""
    if isinstance(obj, Decimal):
        return int(obj) if obj == obj.to_integral_value() and obj.as_tuple().exponent == 0 \
            else float(obj)
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [plain(v) for v in obj]
    return obj


def dec(value: Any, element: str) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise _bad_value(element, value)
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int | float):
        return Decimal(str(value))
    if isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise _bad_value(element, value) from None
        if result.is_finite():
            return result
    raise _bad_value(element, value)


def dec_opt(value: Any, element: str) -> Decimal | None:
    return None if value is None else dec(value, element)


def _bad_value(element: str, value: Any) -> QBOFault:
    return errors.validation(
        "2010",
        "Request has invalid or unsupported property",
        f"Property Name:{element} has an invalid value: {value!r}",
        element,
    )


def _too_long(element: str, limit: int) -> QBOFault:
    return errors.validation(
        "2050",
        "String length is either shorter or longer than supported by specification",
        f"String length specified does not match the supported length. "
        f"Min:1 Max:{limit} supported. Supplied length:more",
        element,
    )


def _bool(value: Any, element: str, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    raise _bad_value(element, value)


def _str(value: Any, element: str, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise _bad_value(element, value)
    text = str(value)
    if len(text) > limit:
        raise _too_long(element, limit)
    return text


def _date(value: Any, element: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return date.fromisoformat(value[:10]).isoformat()
        except ValueError:
            pass
    raise _bad_value(element, value)


def ref_id(value: Any, element: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, dict) and value.get("value") not in (None, ""):
        return str(value["value"])
    raise _bad_value(element, value)


def _currency(value: Any, element: str) -> str | None:
    code = ref_id(value, element)
    if code is not None and not re.fullmatch(r"[A-Z]{3}", code):
        raise _bad_value(element, value)
    return code


def currency_ref(code: str) -> JSON:
    return {"value": code, "name": CURRENCY_NAMES.get(code, code)}


# --------------------------------------------------------------------------- realms


@dataclass
class Realm:
    realm_id: str
    home_currency: str = "USD"
    company_name: str = "Sandbox Company"
    rows: dict[str, dict[str, JSON]] = field(
        default_factory=lambda: {name: {} for name in ENTITIES}
    )
    changed_at: dict[str, dict[str, float]] = field(
        default_factory=lambda: {name: {} for name in ENTITIES}
    )
    deleted_at: dict[str, dict[str, float]] = field(
        default_factory=lambda: {name: {} for name in ENTITIES}
    )
    next_id: dict[str, int] = field(
        default_factory=lambda: {name: 1 for name in ENTITIES} | {"Account": 90}
    )
    next_doc_number: int = 1001
    region: str = "US"  # US (automated sales tax), UK, CA or AU (tax.py)
    country: str = "US"  # CompanyInfo.Country
    voided: set[str] = field(default_factory=set)  # "Invoice:12", "Payment:3"
    executed_writes: int = 0  # writes actually applied (requestid replays do not count)

    def dump(self) -> JSON:
        out: JSON = {
            "realmId": self.realm_id,
            "HomeCurrency": self.home_currency,
            "CompanyName": self.company_name,
            "Region": self.region,
            "executedWrites": self.executed_writes,
        }
        for name, rows in self.rows.items():
            out[name] = plain(sorted(rows.values(), key=lambda r: id_key(r["Id"])))
        out["Deleted"] = {
            name: sorted(ids, key=id_key) for name, ids in self.deleted_at.items() if ids
        }
        return out


class Books:
    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.realms: dict[str, Realm] = {}

    def realm(self, realm_id: str) -> Realm:
        realm = self.realms.get(realm_id)
        if realm is None:
            realm = Realm(realm_id)
            now = self.clock()
            for ident, name, acct_type, sub_type in DEFAULT_ACCOUNTS:
                body = {"Name": name, "AccountType": acct_type, "AccountSubType": sub_type}
                _store(realm, "Account", _build_account(realm, body, None), None, now, ident)
            for code in US_CODES:
                _store(realm, "TaxCode", copy.deepcopy(code), None, now, code["Id"])
            self.realms[realm_id] = realm
        return realm

    # ---------------------------------------------------------------- public operations

    def read(self, realm: Realm, entity: str, ident: str) -> JSON:
        row = realm.rows[entity].get(ident)
        if row is None:
            raise errors.not_found(entity, ident)
        return {entity: row}

    def query(self, realm: Realm, text: str) -> JSON:
        q = parse_query(text)
        return evaluate(q, list(realm.rows[q.entity].values()))

    def write(self, realm: Realm, entity: str, operation: str, body: Any) -> JSON:
        """create | update | delete | void; returns ``{entity: object}``."""
        if not isinstance(body, dict):
            raise _bad_value(entity, "not an object")
        if entity in TAX_ENTITIES:
            # TaxCode and TaxRate are created through the TaxService only (QuickBooks-V3-PHP-
            # SDK #106, #42: code 500, element Operation; python-quickbooks #297).
            raise errors.validation("500", "Unsupported Operation",
                                    f"Operation {operation.capitalize()} is not supported.",
                                    "Operation")
        now = self.clock()
        if operation in ("create", "update"):
            result = self._upsert(realm, entity, body, operation, now)
        elif operation == "delete":
            result = self._delete(realm, entity, body, now)
        elif operation == "void":
            result = self._void(realm, entity, body, now)
        else:
            raise errors.validation(
                "2010", "Unsupported Operation", f"Operation {operation} is not supported"
            )
        realm.executed_writes += 1
        return result

    def seed(self, realm: Realm, data: JSON, now: float) -> JSON:
        if data.get("Region") is not None:
            self._set_region(realm, str(data["Region"]), now)
        if isinstance(data.get("HomeCurrency"), str):
            realm.home_currency = data["HomeCurrency"]
        if isinstance(data.get("CompanyName"), str):
            realm.company_name = data["CompanyName"]
        created: JSON = {}
        for entity in ("TaxRate", "TaxCode", "Account", "Vendor", "Employee", "Customer",
                       "Item", "Invoice", "Payment"):
            for body in data.get(entity) or []:
                body = dict(body)
                forced = body.pop("Id", None)
                if forced is not None and str(forced) in realm.rows[entity]:
                    raise errors.validation(
                        "2010", "Duplicate Id", f"{entity} Id {forced} already exists"
                    )
                obj = BUILDERS[entity](realm, _writable(entity, body), None)
                stored = _store(realm, entity, obj, None, now,
                                None if forced is None else str(forced))
                _after_write(realm, entity, stored, None, now)
                created.setdefault(entity, []).append(plain(stored))
        return created

    def _set_region(self, realm: Realm, region: str, now: float) -> None:
        """A company of that region with its default tax codes and rates (tax.py)."""
        if region != "US" and region not in REGIONS:
            raise errors.validation("2010", "Invalid seed",
                                    f"Region must be US, {', '.join(REGIONS)}; got {region!r}")
        if any(realm.rows[e] for e in ("Invoice", "Payment")):
            raise errors.validation("2010", "Invalid seed",
                                    "The region is chosen before any transaction is written")
        for entity in TAX_ENTITIES:
            realm.rows[entity].clear()
            realm.changed_at[entity].clear()
        realm.region = region
        if region == "US":
            realm.country = "US"
            for code in US_CODES:
                _store(realm, "TaxCode", copy.deepcopy(code), None, now, code["Id"])
            return
        spec = REGIONS[region]
        realm.country, realm.home_currency = spec.country, spec.currency
        for entity, rows in (("TaxRate", spec.rates), ("TaxCode", spec.codes)):
            for row in rows:
                _store(realm, entity, copy.deepcopy(row), None, now, row["Id"])

    def cdc(self, realm: Realm, entities: list[str], since: float) -> list[JSON]:
        responses: list[JSON] = []
        budget = 1000
        for entity in entities:
            changed = [
                (realm.changed_at[entity][i], row)
                for i, row in realm.rows[entity].items()
                if int(realm.changed_at[entity][i]) >= since
            ]
            changed += [
                (t, {"Id": i, "status": "Deleted", "domain": "QBO",
                     "MetaData": {"LastUpdatedTime": stamp(t)}})
                for i, t in realm.deleted_at[entity].items()
                if int(t) >= since
            ]
            changed.sort(key=lambda pair: (pair[0], id_key(pair[1]["Id"])))
            rows = [row for _, row in changed][:budget]
            budget -= len(rows)
            if rows:
                responses.append(
                    {entity: rows, "startPosition": 1, "maxResults": len(rows)}
                )
            else:
                responses.append({})
        return responses

    # ---------------------------------------------------------------- internals

    def _upsert(
        self, realm: Realm, entity: str, body: JSON, operation: str, now: float
    ) -> JSON:
        _check_properties(entity, body)
        ident = body.get("Id")
        if ident in (None, ""):
            if operation == "update":
                raise errors.required("Id")
            obj = BUILDERS[entity](realm, _writable(entity, body), None)
            stored = _store(realm, entity, obj, None, now)
            _after_write(realm, entity, stored, None, now)
            return {entity: stored}
        cur = _current(realm, entity, body)
        data = _writable(entity, body)
        if body.get("sparse") is True:
            # Sparse: only the fields sent change; arrays and nested objects are replaced whole.
            data = {**_writable(entity, cur), **data}
        obj = BUILDERS[entity](realm, data, cur)
        before = copy.deepcopy(cur)
        stored = _store(realm, entity, obj, cur, now)
        _after_write(realm, entity, stored, before, now)
        return {entity: stored}

    def _delete(self, realm: Realm, entity: str, body: JSON, now: float) -> JSON:
        if entity not in ("Invoice", "Payment"):
            raise errors.business_rule(
                f"{entity} records cannot be deleted; make them inactive instead "
                "(sparse update with Active false)."
            )
        cur = _current(realm, entity, body)
        ident = cur["Id"]
        if entity == "Invoice" and _applied(realm, ident) > 0:
            raise errors.business_rule(
                "This transaction has payments applied to it; delete or unapply them first."
            )
        del realm.rows[entity][ident]
        del realm.changed_at[entity][ident]
        realm.deleted_at[entity][ident] = now
        _after_write(realm, entity, None, cur, now)
        return {entity: {"Id": ident, "status": "Deleted", "domain": "QBO"}}

    def _void(self, realm: Realm, entity: str, body: JSON, now: float) -> JSON:
        if entity not in ("Invoice", "Payment"):
            raise errors.business_rule(f"{entity} records cannot be voided.")
        cur = _current(realm, entity, body)
        ident = cur["Id"]
        if entity == "Invoice" and _applied(realm, ident) > 0:
            raise errors.business_rule(
                "This invoice has payments applied to it and cannot be voided; "
                "unapply or delete the payments first."
            )
        before = copy.deepcopy(cur)
        obj = copy.deepcopy(cur)
        zero = Decimal(0)
        for line in obj.get("Line", []):
            line["Amount"] = zero
            detail = line.get("SalesItemLineDetail")
            if isinstance(detail, dict) and "Qty" in detail:
                detail["Qty"] = zero
        obj["TotalAmt"] = zero
        if entity == "Invoice":
            obj["Balance"] = zero
            if isinstance(obj.get("TxnTaxDetail"), dict):
                obj["TxnTaxDetail"]["TotalTax"] = zero
            for key in ("HomeTotalAmt", "HomeBalance"):
                if key in obj:
                    obj[key] = zero
        else:
            obj["UnappliedAmt"] = zero
        note = obj.get("PrivateNote")
        if not (isinstance(note, str) and note.startswith("Voided")):
            obj["PrivateNote"] = f"Voided - {note}" if note else "Voided"
        realm.voided.add(f"{entity}:{ident}")
        stored = _store(realm, entity, obj, cur, now)
        _after_write(realm, entity, stored, before, now)
        return {entity: stored}


def _current(realm: Realm, entity: str, body: JSON) -> JSON:
    ident = body.get("Id")
    if ident in (None, ""):
        raise errors.required("Id")
    cur = realm.rows[entity].get(str(ident))
    if cur is None:
        raise errors.not_found(entity, str(ident))
    sync = body.get("SyncToken")
    if sync is None:
        raise errors.required("SyncToken")
    if str(sync) != cur["SyncToken"]:
        raise errors.stale_object()
    return cur


def _check_properties(entity: str, body: JSON) -> None:
    allowed = PROPERTIES[entity] | ATTRIBUTES
    for name in body:
        if name not in allowed:
            raise errors.unsupported_property(entity, name)


def _writable(entity: str, body: JSON) -> JSON:
    skip = READ_ONLY_COMMON | READ_ONLY[entity]
    return {k: copy.deepcopy(v) for k, v in body.items() if k not in skip}


def _store(
    realm: Realm, entity: str, obj: JSON, cur: JSON | None, now: float,
    forced_id: str | None = None,
) -> JSON:
    if cur is None:
        if forced_id is not None:
            ident = forced_id
            if ident.isdigit():
                realm.next_id[entity] = max(realm.next_id[entity], int(ident) + 1)
        else:
            ident = str(realm.next_id[entity])
            realm.next_id[entity] += 1
        sync = "0"
        created = stamp(now)
    else:
        ident = cur["Id"]
        sync = str(int(cur["SyncToken"]) + 1)
        created = cur["MetaData"]["CreateTime"]
    stored: JSON = {
        "Id": ident,
        "SyncToken": sync,
        "MetaData": {"CreateTime": created, "LastUpdatedTime": stamp(now)},
    }
    stored.update({k: v for k, v in obj.items() if k not in READ_ONLY_COMMON})
    stored.update({"domain": "QBO", "sparse": False})
    realm.rows[entity][ident] = stored
    realm.changed_at[entity][ident] = now
    return stored


def _touch(realm: Realm, entity: str, row: JSON, now: float) -> None:
    row["SyncToken"] = str(int(row["SyncToken"]) + 1)
    row["MetaData"]["LastUpdatedTime"] = stamp(now)
    realm.changed_at[entity][row["Id"]] = now


def _after_write(
    realm: Realm, entity: str, new: JSON | None, old: JSON | None, now: float
) -> None:
    """Keep derived figures (invoice balances, customer balances) in step."""
    customers: set[str] = set()
    for row in (new, old):
        if row is not None and isinstance(row.get("CustomerRef"), dict):
            customers.add(str(row["CustomerRef"].get("value")))
    if entity == "Payment":
        invoices = {tid for row in (new, old) if row is not None for tid in _linked(row)}
        for inv_id in invoices:
            _refresh_invoice(realm, inv_id, now)
    for cust_id in customers:
        _refresh_customer(realm, cust_id)


def _linked(payment: JSON) -> list[str]:
    out: list[str] = []
    for line in payment.get("Line", []):
        for link in line.get("LinkedTxn", []):
            if link.get("TxnType") == "Invoice":
                out.append(str(link.get("TxnId")))
    return out


def _applied(realm: Realm, inv_id: str, exclude_payment: str | None = None) -> Decimal:
    total = Decimal(0)
    for pay in realm.rows["Payment"].values():
        if pay["Id"] == exclude_payment:
            continue
        for line in pay.get("Line", []):
            if any(str(link.get("TxnId")) == inv_id and link.get("TxnType") == "Invoice"
                   for link in line.get("LinkedTxn", [])):
                total += dec(line.get("Amount", 0), "Amount")
    return total


def _refresh_invoice(realm: Realm, inv_id: str, now: float) -> None:
    inv = realm.rows["Invoice"].get(inv_id)
    if inv is None:
        return
    applied = _applied(realm, inv_id)
    balance = dec(inv["TotalAmt"], "TotalAmt") - applied
    links = [
        {"TxnId": pay["Id"], "TxnType": "Payment"}
        for pay in realm.rows["Payment"].values()
        if inv_id in _linked(pay) and f"Payment:{pay['Id']}" not in realm.voided
    ]
    if balance != inv["Balance"] or links != inv.get("LinkedTxn", []):
        inv["Balance"] = balance
        inv["LinkedTxn"] = links
        if "HomeBalance" in inv:
            rate = dec(inv.get("ExchangeRate", 1), "ExchangeRate")
            inv["HomeBalance"] = round_money(balance * rate, minor_units(realm.home_currency))
        _touch(realm, "Invoice", inv, now)


def _refresh_customer(realm: Realm, cust_id: str) -> None:
    cust = realm.rows["Customer"].get(cust_id)
    if cust is None:
        return
    balance = Decimal(0)
    for inv in realm.rows["Invoice"].values():
        if inv["CustomerRef"]["value"] == cust_id:
            balance += dec(inv["Balance"], "Balance")
    for pay in realm.rows["Payment"].values():
        if pay["CustomerRef"]["value"] == cust_id:
            balance -= dec(pay.get("UnappliedAmt", 0), "UnappliedAmt")
    cust["Balance"] = balance
    cust["BalanceWithJobs"] = balance


def _resolve(realm: Realm, entity: str, ref: Any, element: str) -> JSON:
    ident = ref_id(ref, element)
    if ident is None:
        raise errors.required(element)
    row = realm.rows[entity].get(ident)
    if row is None:
        raise errors.invalid_reference(entity, ident, element)
    if row.get("Active") is False:
        raise errors.not_found(entity, ident)
    return row


def _check_name(name: Any, element: str, limit: int) -> str:
    text = _str(name, element, limit)
    if text is None or not text.strip():
        raise errors.required(element)
    text = text.strip()
    if ":" in text:
        raise errors.business_rule(f"{element} cannot contain a colon (:).", element)
    return text


def _unique(realm: Realm, entity: str, key: str, name: str, cur: JSON | None) -> None:
    folded = name.casefold()
    lists = NAME_LIST if entity in NAME_LIST else (entity,)
    for other in lists:
        for row in realm.rows[other].values():
            if cur is not None and other == entity and row["Id"] == cur["Id"]:
                continue
            if str(row.get(key, "")).casefold() == folded:  # inactive rows count too
                raise errors.duplicate_name(entity.lower())


# --------------------------------------------------------------------------- builders
# Each builder turns the writable fields into the stored object (without Id/SyncToken/
# MetaData) or raises a QBOFault. ``cur`` is the current object on update.


def _build_customer(realm: Realm, d: JSON, cur: JSON | None) -> JSON:
    name = d.get("DisplayName")
    if name is None or (isinstance(name, str) and not name.strip()):
        # QuickBooks derives DisplayName from the name parts when it is not supplied.
        parts = [d.get(k) for k in ("Title", "GivenName", "MiddleName", "FamilyName", "Suffix")]
        name = " ".join(str(p).strip() for p in parts if isinstance(p, str) and p.strip())
        if not name:
            raise errors.required("DisplayName")
    display = _check_name(name, "DisplayName", 500)
    _unique(realm, "Customer", "DisplayName", display, cur)
    active = _bool(d.get("Active"), "Active", True)
    if cur is not None and cur.get("Active", True) and not active and dec(
        cur.get("Balance", 0), "Balance"
    ) != 0:
        raise errors.list_has_balance()
    currency = _currency(d.get("CurrencyRef"), "CurrencyRef")
    if currency is None:
        currency = cur["CurrencyRef"]["value"] if cur else realm.home_currency
    if cur is not None and currency != cur["CurrencyRef"]["value"] and _has_transactions(
        realm, cur["Id"]
    ):
        raise errors.business_rule(
            "You can't change the currency of a customer that has transactions."
        )
    email = d.get("PrimaryEmailAddr")
    if email is not None and not (isinstance(email, dict) and isinstance(
        email.get("Address", ""), str
    )):
        raise _bad_value("PrimaryEmailAddr", email)
    balance = Decimal(0) if cur is None else cur.get("Balance", Decimal(0))
    return {
        **d,
        "DisplayName": display,
        "FullyQualifiedName": display,
        "PrintOnCheckName": _str(d.get("PrintOnCheckName"), "PrintOnCheckName", 110)
        or display[:110],
        "Active": active,
        "Job": _bool(d.get("Job"), "Job", False),
        "BillWithParent": _bool(d.get("BillWithParent"), "BillWithParent", False),
        "Taxable": _bool(d.get("Taxable"), "Taxable", True),
        "CurrencyRef": currency_ref(currency),
        "Balance": balance,
        "BalanceWithJobs": balance,
    }


def _has_transactions(realm: Realm, cust_id: str) -> bool:
    return any(
        row["CustomerRef"]["value"] == cust_id
        for entity in ("Invoice", "Payment")
        for row in realm.rows[entity].values()
    )


def _build_item(realm: Realm, d: JSON, cur: JSON | None) -> JSON:
    name = _check_name(d.get("Name"), "Name", 100)
    _unique(realm, "Item", "Name", name, cur)
    item_type = d.get("Type", "NonInventory")
    if item_type not in ITEM_TYPES:
        raise errors.validation(
            "2170", "Invalid Enumeration", f"Invalid Enumeration : {item_type}", "Type"
        )
    if item_type not in CREATABLE_ITEM_TYPES:
        raise errors.business_rule(f"Items of type {item_type} cannot be saved through the API.")
    out: JSON = {**d, "Name": name, "FullyQualifiedName": name, "Type": item_type}
    if item_type != "Category":
        ref = d.get("IncomeAccountRef")
        ident = ref_id(ref, "IncomeAccountRef")
        if ident is None:
            raise errors.invalid_reference("Accounts", "(none)", "IncomeAccountRef")
        acct = realm.rows["Account"].get(ident)
        if acct is None or acct.get("Classification") != "Revenue":
            # Income or Other Income accounts only.
            raise errors.invalid_reference("Accounts", ident, "IncomeAccountRef")
        out["IncomeAccountRef"] = {"value": ident, "name": acct["Name"]}
    if item_type == "Inventory":
        for key in ("AssetAccountRef", "ExpenseAccountRef"):
            acct = _resolve(realm, "Account", d.get(key), key)
            out[key] = {"value": acct["Id"], "name": acct["Name"]}
        out["QtyOnHand"] = dec(d.get("QtyOnHand", 0), "QtyOnHand")
        if _date(d.get("InvStartDate"), "InvStartDate") is None:
            raise errors.required("InvStartDate")
        out["TrackQtyOnHand"] = True
    if d.get("UnitPrice") is not None:
        out["UnitPrice"] = dec(d["UnitPrice"], "UnitPrice")
    if d.get("Sku") is not None:
        out["Sku"] = _str(d["Sku"], "Sku", 100)
    out["Active"] = _bool(d.get("Active"), "Active", True)
    out["Taxable"] = _bool(d.get("Taxable"), "Taxable", False)
    return out


def _build_account(realm: Realm, d: JSON, cur: JSON | None) -> JSON:
    name = _check_name(d.get("Name"), "Name", 100)
    _unique(realm, "Account", "Name", name, cur)
    acct_type = d.get("AccountType")
    if acct_type is None:
        raise errors.required("AccountType")
    if acct_type not in ACCOUNT_CLASSIFICATION:
        raise errors.validation(
            "2170", "Invalid Enumeration", f"Invalid Enumeration : {acct_type}", "AccountType"
        )
    currency = _currency(d.get("CurrencyRef"), "CurrencyRef") or realm.home_currency
    balance = Decimal(0) if cur is None else cur.get("CurrentBalance", Decimal(0))
    return {
        **d,
        "Name": name,
        "FullyQualifiedName": name,
        "AccountType": acct_type,
        "Classification": ACCOUNT_CLASSIFICATION[acct_type],
        "SubAccount": False,
        "Active": _bool(d.get("Active"), "Active", True),
        "CurrencyRef": currency_ref(currency),
        "CurrentBalance": balance,
        "CurrentBalanceWithSubAccounts": balance,
    }


def _txn_currency(realm: Realm, d: JSON, cust: JSON) -> str:
    cust_currency = str(cust["CurrencyRef"]["value"])
    currency = _currency(d.get("CurrencyRef"), "CurrencyRef") or cust_currency
    if currency != cust_currency:
        raise errors.business_rule(
            f"The transaction currency ({currency}) must match the customer's currency "
            f"({cust_currency}).",
            "CurrencyRef",
        )
    return currency


def _build_invoice(realm: Realm, d: JSON, cur: JSON | None) -> JSON:
    cust = _resolve(realm, "Customer", d.get("CustomerRef"), "CustomerRef")
    currency = _txn_currency(realm, d, cust)
    places = minor_units(currency)
    raw_lines = d.get("Line")
    if not isinstance(raw_lines, list) or not raw_lines:
        raise errors.required("Line")
    lines: list[JSON] = []
    subtotal = Decimal(0)
    line_tax = Decimal(0)  # sum of TaxInclusiveAmt - Amount
    computed_tax = Decimal(0)  # non-US: QuickBooks' own, line by line
    by_rate: dict[str, list[Decimal]] = {}  # TaxRate Id -> [tax, net taxable, percent]
    gtc_in = d.get("GlobalTaxCalculation", "TaxExcluded")
    discount_raw: JSON | None = None
    for raw in raw_lines:
        if not isinstance(raw, dict):
            raise _bad_value("Line", raw)
        kind = raw.get("DetailType")
        if kind not in LINE_DETAIL_TYPES:
            raise errors.validation(
                "2170", "Invalid Enumeration", f"Invalid Enumeration : {kind}", "DetailType"
            )
        if kind == "SubTotalLineDetail":
            continue  # server-computed
        if kind == "DiscountLineDetail":
            if discount_raw is not None:
                raise errors.business_rule("Only one discount line is allowed.", "Line")
            discount_raw = raw
            continue
        n = len(lines) + 1
        if kind == "DescriptionOnly":
            lines.append({**raw, "Id": str(n), "LineNum": n, "Amount": Decimal(0)})
            continue
        if kind != "SalesItemLineDetail":
            raise errors.business_rule(f"{kind} lines are not supported on invoices.", "Line")
        detail = raw.get("SalesItemLineDetail")
        if not isinstance(detail, dict):
            raise errors.required("SalesItemLineDetail")
        item = _resolve(realm, "Item", detail.get("ItemRef"), "ItemRef")
        qty = dec_opt(detail.get("Qty"), "Qty")
        price = dec_opt(detail.get("UnitPrice"), "UnitPrice")
        amount = dec_opt(raw.get("Amount"), "Amount")
        if qty is not None and price is not None:
            expected = round_money(qty * price, places)
            if amount is None:
                amount = expected
            elif round_money(amount, places) != expected:
                raise errors.validation(
                    "6070",
                    "Amount is not equal to UnitPrice * Qty",
                    f"Amount is not equal to UnitPrice * Qty. Supplied value:{amount}",
                    "Amount",
                )
        if amount is None:
            raise errors.required("Amount")
        amount = round_money(amount, places)
        for name in detail:
            if name not in PROPERTIES["SalesItemLineDetail"]:
                raise errors.unsupported_property("SalesItemLineDetail", name)
        out_detail: JSON = {**detail, "ItemRef": {"value": item["Id"], "name": item["Name"]}}
        inclusive = dec_opt(detail.get("TaxInclusiveAmt"), "TaxInclusiveAmt")
        if inclusive is not None:
            inclusive = round_money(inclusive, places)
            if inclusive < amount:
                raise errors.business_rule(
                    f"TaxInclusiveAmt ({inclusive}) is less than the line Amount ({amount}), "
                    "which excludes tax.", "TaxInclusiveAmt")
            out_detail["TaxInclusiveAmt"] = inclusive
            line_tax += inclusive - amount
        if qty is not None:
            out_detail["Qty"] = qty
        if price is not None:
            out_detail["UnitPrice"] = price
        code = _line_tax_code(realm, detail.get("TaxCodeRef"))
        out_detail["TaxCodeRef"] = {"value": code["Id"]}
        if realm.region != "US":
            # QuickBooks computes each line's tax from its exclusive Amount (tax.py).
            taxed = Decimal(0)
            for part in line_taxes(code, realm.rows["TaxRate"], amount, places):
                acc = by_rate.setdefault(part.rate_id, [Decimal(0), Decimal(0), part.percent])
                acc[0] += part.tax
                acc[1] += amount
                taxed += part.tax
            computed_tax += taxed
            if gtc_in == "TaxInclusive":
                out_detail["TaxInclusiveAmt"] = amount + taxed
        line: JSON = {
            "Id": str(n),
            "LineNum": n,
            "Amount": amount,
            "DetailType": "SalesItemLineDetail",
            "SalesItemLineDetail": out_detail,
        }
        description = raw.get("Description", item.get("Description"))
        if description is not None:
            line["Description"] = _str(description, "Description", 4000)
        lines.append(line)
        subtotal += amount
    if not any(line.get("DetailType") == "SalesItemLineDetail" for line in lines):
        raise errors.business_rule("An invoice needs at least one SalesItemLineDetail line.")
    lines.append({"Amount": subtotal, "DetailType": "SubTotalLineDetail",
                  "SubTotalLineDetail": {}})
    discount = Decimal(0)
    if discount_raw is not None:
        ddet = discount_raw.get("DiscountLineDetail") or {}
        if not isinstance(ddet, dict):
            raise _bad_value("DiscountLineDetail", ddet)
        percent_based = _bool(ddet.get("PercentBased"), "PercentBased", False)
        out_ddet: JSON = {
            "PercentBased": percent_based,
            "DiscountAccountRef": ddet.get("DiscountAccountRef")
            or {"value": DISCOUNT_ACCOUNT, "name": "Discounts given"},
        }
        if percent_based:
            pct = dec_opt(ddet.get("DiscountPercent"), "DiscountPercent")
            if pct is None:
                raise errors.required("DiscountPercent")
            if not Decimal(0) <= pct <= Decimal(100):
                raise errors.business_rule("DiscountPercent must be between 0 and 100.")
            discount = round_money(subtotal * pct / 100, places)
            out_ddet["DiscountPercent"] = pct
        else:
            amt = dec_opt(discount_raw.get("Amount"), "Amount")
            if amt is None:
                raise errors.required("Amount")
            discount = round_money(amt, places)
        if discount < 0 or discount > subtotal:
            raise errors.business_rule("The discount cannot exceed the subtotal.")
        lines.append({
            "Id": str(len(lines)),
            "Amount": discount,
            "DetailType": "DiscountLineDetail",
            "DiscountLineDetail": out_ddet,
        })
    gtc = d.get("GlobalTaxCalculation", "TaxExcluded")
    if gtc not in GLOBAL_TAX:
        raise errors.validation(
            "2170", "Invalid Enumeration", f"Invalid Enumeration : {gtc}",
            "GlobalTaxCalculation",
        )
    tax_in = d.get("TxnTaxDetail") or {}
    if not isinstance(tax_in, dict):
        raise _bad_value("TxnTaxDetail", tax_in)
    if realm.region != "US":
        if discount_raw is not None:
            raise errors.business_rule(
                "(simulator) discount lines on invoices of non-US companies are not "
                "simulated; send discounted line amounts", "Line")
        # QuickBooks computes the tax and replaces a TotalTax the client sent (tax.py).
        tax = computed_tax
        tax_in = {"TotalTax": tax, "TaxLine": [
            {"Amount": amt, "DetailType": "TaxLineDetail", "TaxLineDetail": {
                "TaxRateRef": {"value": rid, "name": realm.rows["TaxRate"][rid]["Name"]},
                "PercentBased": True, "TaxPercent": pct, "NetAmountTaxable": net}}
            for rid, (amt, net, pct) in by_rate.items()]}
    elif tax_in.get("TotalTax") is not None:
        tax = round_money(dec(tax_in["TotalTax"], "TotalTax"), places)
    elif gtc == "TaxInclusive":
        tax = line_tax
    else:
        tax = Decimal(0)
    if gtc == "NotApplicable" and realm.region == "US":
        tax = Decimal(0)
    if tax < 0:
        raise errors.business_rule("TotalTax cannot be negative.")
    # Line amounts exclude tax in every mode; TaxInclusive only says how the lines were
    # entered (their inclusive figure is TaxInclusiveAmt).
    total = subtotal - discount + tax
    applied = _applied(realm, cur["Id"]) if cur is not None else Decimal(0)
    if total < applied:
        raise errors.business_rule(
            f"The new total ({total}) is less than the payments applied ({applied})."
        )
    doc = _str(d.get("DocNumber"), "DocNumber", 21)
    if doc is None:
        if cur is not None and cur.get("DocNumber"):
            doc = cur["DocNumber"]
        else:
            doc = str(realm.next_doc_number)
            realm.next_doc_number += 1
    txn_date = _date(d.get("TxnDate"), "TxnDate") or (
        cur["TxnDate"] if cur else datetime.now(COMPANY_TZ).date().isoformat()
    )
    due = _date(d.get("DueDate"), "DueDate") or txn_date
    out: JSON = {
        **d,
        "CustomerRef": {"value": cust["Id"], "name": cust["DisplayName"]},
        "CurrencyRef": currency_ref(currency),
        "Line": lines,
        "TxnTaxDetail": {**tax_in, "TotalTax": tax},
        "GlobalTaxCalculation": gtc,
        "DocNumber": doc,
        "TxnDate": txn_date,
        "DueDate": due,
        "TotalAmt": total,
        "Balance": total - applied,
        "LinkedTxn": cur.get("LinkedTxn", []) if cur else [],
        "EmailStatus": d.get("EmailStatus", "NotSet"),
        "PrintStatus": d.get("PrintStatus", "NotSet"),
    }
    if currency != realm.home_currency:
        rate = dec(d.get("ExchangeRate", 1), "ExchangeRate")
        home_places = minor_units(realm.home_currency)
        out["ExchangeRate"] = rate
        out["HomeTotalAmt"] = round_money(total * rate, home_places)
        out["HomeBalance"] = round_money((total - applied) * rate, home_places)
    return out


def _line_tax_code(realm: Realm, ref: Any) -> JSON:
    """The line's TaxCode. US: TAX or NON (absent: NON). Elsewhere one of the company's
    active codes, required on every line (tax.py)."""
    ident = ref_id(ref, "TaxCodeRef") if ref is not None else None
    if ident is None:
        if realm.region == "US":
            return realm.rows["TaxCode"]["NON"]
        raise errors.business_rule(REGIONS[realm.region].missing_code)
    code = realm.rows["TaxCode"].get(ident)
    if code is None or code.get("Active") is False:
        raise errors.invalid_reference("TaxCode", ident, "TaxCodeRef")
    return code


def _build_tax_rate(realm: Realm, d: JSON, cur: JSON | None) -> JSON:
    name = _check_name(d.get("Name"), "Name", 31)
    value = dec(d.get("RateValue", 0), "RateValue")
    return {"Description": name, "Active": True, "SpecialTaxType": "NONE",
            "DisplayType": "ReadOnly", **d, "Name": name, "RateValue": value}


def _build_tax_code(realm: Realm, d: JSON, cur: JSON | None) -> JSON:
    name = _check_name(d.get("Name"), "Name", 100)
    sales = d.get("SalesTaxRateList") or {"TaxRateDetail": []}
    for n, detail in enumerate(sales.get("TaxRateDetail") or []):
        rate = _resolve(realm, "TaxRate", detail.get("TaxRateRef"), "TaxRateRef")
        detail["TaxRateRef"] = {"value": rate["Id"], "name": rate["Name"]}
        detail.setdefault("TaxTypeApplicable", "TaxOnAmount")
        detail.setdefault("TaxOrder", n)
    return {"Description": name, "Active": True, "Hidden": False, "Taxable": True,
            "TaxGroup": len(sales.get("TaxRateDetail") or []) > 1,
            "PurchaseTaxRateList": {"TaxRateDetail": []},
            "TaxCodeConfigType": "USER_DEFINED", **d, "Name": name,
            "SalesTaxRateList": sales}


def _build_payment(realm: Realm, d: JSON, cur: JSON | None) -> JSON:
    cust = _resolve(realm, "Customer", d.get("CustomerRef"), "CustomerRef")
    currency = _txn_currency(realm, d, cust)
    places = minor_units(currency)
    if d.get("TotalAmt") is None:
        raise errors.required("TotalAmt")
    total = round_money(dec(d["TotalAmt"], "TotalAmt"), places)
    if total < 0:
        raise errors.business_rule("TotalAmt cannot be negative.", "TotalAmt")
    deposit = d.get("DepositToAccountRef")
    if deposit is None:
        deposit_ref = {"value": UNDEPOSITED_FUNDS, "name": "Undeposited Funds"}
    else:
        acct = _resolve(realm, "Account", deposit, "DepositToAccountRef")
        deposit_ref = {"value": acct["Id"], "name": acct["Name"]}
    raw_lines = d.get("Line") or []
    if not isinstance(raw_lines, list):
        raise _bad_value("Line", raw_lines)
    lines: list[JSON] = []
    applied_here: dict[str, Decimal] = {}
    for raw in raw_lines:
        if not isinstance(raw, dict):
            raise _bad_value("Line", raw)
        amount = dec_opt(raw.get("Amount"), "Amount")
        if amount is None:
            raise errors.required("Amount")
        amount = round_money(amount, places)
        links = raw.get("LinkedTxn")
        if not isinstance(links, list) or len(links) != 1 or not isinstance(links[0], dict):
            raise errors.business_rule("Each payment line must link exactly one invoice.")
        link = links[0]
        if link.get("TxnType") != "Invoice":
            raise errors.business_rule(
                f"Linking a payment to {link.get('TxnType')} is not supported.", "TxnType"
            )
        inv_id = str(link.get("TxnId"))
        inv = realm.rows["Invoice"].get(inv_id)
        if inv is None:
            raise errors.invalid_reference("Invoice", inv_id, "LinkedTxn")
        if inv["CustomerRef"]["value"] != cust["Id"]:
            raise errors.business_rule(
                f"Invoice {inv_id} belongs to another customer.", "LinkedTxn"
            )
        if inv["CurrencyRef"]["value"] != currency:
            raise errors.business_rule(f"Invoice {inv_id} is in another currency.")
        if amount < 0:
            raise errors.business_rule("Applied amounts cannot be negative.")
        applied_here[inv_id] = applied_here.get(inv_id, Decimal(0)) + amount
        open_balance = dec(inv["TotalAmt"], "TotalAmt") - _applied(
            realm, inv_id, exclude_payment=cur["Id"] if cur else None
        )
        if applied_here[inv_id] > open_balance:
            raise errors.business_rule(
                f"The amount applied ({applied_here[inv_id]}) is more than the open balance "
                f"({open_balance}) of invoice {inv_id}.",
                "Line",
            )
        lines.append({**raw, "Amount": amount,
                      "LinkedTxn": [{"TxnId": inv_id, "TxnType": "Invoice"}]})
    used = sum(applied_here.values(), Decimal(0))
    if used > total:
        raise errors.business_rule(
            f"The amounts applied ({used}) exceed the payment total ({total}).", "TotalAmt"
        )
    txn_date = _date(d.get("TxnDate"), "TxnDate") or (
        cur["TxnDate"] if cur else datetime.now(COMPANY_TZ).date().isoformat()
    )
    return {
        **d,
        "CustomerRef": {"value": cust["Id"], "name": cust["DisplayName"]},
        "CurrencyRef": currency_ref(currency),
        "DepositToAccountRef": deposit_ref,
        "TotalAmt": total,
        "UnappliedAmt": total - used,
        "TxnDate": txn_date,
        "Line": lines,
        "ProcessPayment": False,
    }


def _build_name(entity: str) -> Callable[[Realm, JSON, JSON | None], JSON]:
    """Vendor and Employee: only what the shared name list needs."""

    def build(realm: Realm, d: JSON, cur: JSON | None) -> JSON:
        name = d.get("DisplayName")
        if name is None or (isinstance(name, str) and not name.strip()):
            parts = [d.get(k) for k in ("Title", "GivenName", "MiddleName", "FamilyName",
                                        "Suffix")]
            name = " ".join(str(p).strip() for p in parts if isinstance(p, str) and p.strip())
            if not name:
                raise errors.required("DisplayName")
        display = _check_name(name, "DisplayName", 500)
        _unique(realm, entity, "DisplayName", display, cur)
        out: JSON = {**d, "DisplayName": display, "FullyQualifiedName": display,
                     "PrintOnCheckName": display[:110],
                     "Active": _bool(d.get("Active"), "Active", True)}
        if entity == "Vendor":
            out["Balance"] = Decimal(0) if cur is None else cur.get("Balance", Decimal(0))
        return out

    return build


BUILDERS: dict[str, Callable[[Realm, JSON, JSON | None], JSON]] = {
    "Vendor": _build_name("Vendor"),
    "Employee": _build_name("Employee"),
    "Customer": _build_customer,
    "Item": _build_item,
    "Account": _build_account,
    "Invoice": _build_invoice,
    "Payment": _build_payment,
    "TaxRate": _build_tax_rate,
    "TaxCode": _build_tax_code,
}
