"""One Xero organisation's books: contacts, items, accounts, tax rates, invoices, payments.

Records are kept as dicts in Xero's JSON shape plus private `_`-prefixed keys (the
`_updated` epoch seconds); `render_*` returns the public form. Writes go through
`Books.write(kind, elements, ...)`, which applies one batch element by element and
returns per-element results; the app decides between all-or-nothing (restore the
snapshot) and `summarizeErrors=false`.

An organisation belongs to a region (`REGIONS`: NZ, the default, AU, UK, US), which gives
its base currency, its default tax rates (`GET /TaxRates`, with the account types each
can be used with) and the default tax type of each account of the chart:

- accounts (every region): 090 Business Bank Account (BANK), 200 Sales (REVENUE), 260
  Other Revenue (REVENUE), 270 Interest Income (REVENUE), 310 Cost of Goods Sold
  (DIRECTCOSTS), 400 Advertising (EXPENSE), 610 Accounts Receivable (CURRENT, DEBTORS),
  800 Accounts Payable (CURRLIAB, CREDITORS), 820 GST/VAT/Sales Tax (CURRLIAB, GST), 860
  Rounding (CURRLIAB, ROUNDING);
- tax rates: see `REGIONS` and sandbox/xero/README.md (sources per region).
"""

from __future__ import annotations

import calendar
import copy
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sandbox.xero import openapi

__all__ = [
    "DUE_DATE_REQUIRED",
    "DUPLICATE_NAME",
    "LINE_TOTAL_MISMATCH",
    "PAYMENT_TERM_TYPES",
    "REGIONS",
    "TAX_TYPE_NOT_FOR_ACCOUNT",
    "TAX_TYPE_UNKNOWN",
    "Books",
    "ElementResult",
    "Region",
    "due_date_from_terms",
    "line_totals",
    "msdate",
    "parse_xero_date",
    "round_dp",
]

DUPLICATE_NAME = (
    "The contact name {name} is already assigned to another contact. "
    "The contact name must be unique across all active contacts."
)
# xeroizer #290 / #395 (Xero staff comment: required for AUTHORISED, not for DRAFT).
DUE_DATE_REQUIRED = "The document DueDate field must be specified."
# Xero-NetStandard #74 ("The line total 1.00 does not match the expected line total 0.00").
LINE_TOTAL_MISMATCH = "The line total {sent} does not match the expected line total {expected}"
# components/schemas/PaymentTermType in specs/xero_accounting.yaml.
PAYMENT_TERM_TYPES = ("DAYSAFTERBILLDATE", "DAYSAFTERBILLMONTH", "OFCURRENTMONTH",
                      "OFFOLLOWINGMONTH")

_CENT = Decimal("0.01")


def round_dp(value: Decimal, dp: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-dp), rounding=ROUND_HALF_UP)


def dec(value: Any) -> Decimal:
    return Decimal(str(value))


def msdate(ts: float) -> str:
    return f"/Date({round(ts * 1000)}+0000)/"


def iso_date(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S")


_MS = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")


def parse_xero_date(text: str) -> float | None:
    """`2019-03-12`, ISO date-times, or `/Date(ms+0000)/` -> epoch seconds (UTC)."""
    text = text.strip()
    m = _MS.match(text)
    if m:
        return int(m.group(1)) / 1000.0
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _day(ts: float) -> float:
    d = datetime.fromtimestamp(ts, UTC)
    return datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()


def _money_text(value: Decimal) -> str:
    """A LineAmount as Xero prints it in messages: 2 dp unless more were sent."""
    return str(value.quantize(_CENT)) if value == value.quantize(_CENT) else str(value)


def due_date_from_terms(day_ts: float, terms: dict[str, Any]) -> float | None:
    """DueDate (epoch seconds, UTC midnight) from `{"Day": n, "Type": PaymentTermType}`.

    The type names are the spec's; their arithmetic is the simulator's reading of them
    (an assumption, see README): n days after the invoice date, n days after the end of
    the invoice's month, day n of the invoice's month, day n of the following month
    (a day past the month's end is its last day)."""
    try:
        n = int(terms.get("Day"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    kind = terms.get("Type")
    d = datetime.fromtimestamp(day_ts, UTC)
    if kind == "DAYSAFTERBILLDATE":
        out = d + timedelta(days=n)
    elif kind == "DAYSAFTERBILLMONTH":
        last = calendar.monthrange(d.year, d.month)[1]
        out = d.replace(day=last) + timedelta(days=n)
    elif kind in ("OFCURRENTMONTH", "OFFOLLOWINGMONTH"):
        year, month = d.year, d.month
        if kind == "OFFOLLOWINGMONTH":
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        last = calendar.monthrange(year, month)[1]
        out = d.replace(year=year, month=month, day=max(1, min(n, last)))
    else:
        return None
    return out.timestamp()


def line_totals(quantity: Decimal, unit: Decimal, discount: Decimal, rate: Decimal,
                amount_types: str, tax_override: Decimal | None = None
                ) -> tuple[Decimal, Decimal, Decimal]:
    """(LineAmount, TaxAmount, DiscountAmount) per X-round: 2 dp per line."""
    gross = quantity * unit
    line = round_dp(gross * (Decimal(100) - discount) / Decimal(100), 2)
    disc = round_dp(gross, 2) - line if discount else Decimal("0.00")
    if amount_types == "NoTax":
        tax = Decimal("0.00")
    elif tax_override is not None:
        tax = round_dp(tax_override, 2)
    elif amount_types == "Inclusive":
        tax = round_dp(line * rate / (Decimal(100) + rate), 2)
    else:
        tax = round_dp(line * rate / Decimal(100), 2)
    return line, tax, disc


class ElementError(Exception):
    def __init__(self, *messages: str) -> None:
        super().__init__("; ".join(messages))
        self.messages = list(messages)


@dataclass
class ElementResult:
    ok: bool
    record: dict[str, Any]  # rendered record (ok) or the submitted element (error)
    errors: list[str] = field(default_factory=list)


_DEFAULT_ACCOUNTS: list[tuple[str, str, str, str, str, str]] = [
    # code, name, type, class, tax role (see Region.account_tax), system account
    ("090", "Business Bank Account", "BANK", "ASSET", "other", ""),
    ("200", "Sales", "REVENUE", "REVENUE", "sales", ""),
    ("260", "Other Revenue", "REVENUE", "REVENUE", "sales", ""),
    ("270", "Interest Income", "REVENUE", "REVENUE", "interest", ""),
    ("310", "Cost of Goods Sold", "DIRECTCOSTS", "EXPENSE", "purchases", ""),
    ("400", "Advertising", "EXPENSE", "EXPENSE", "purchases", ""),
    ("610", "Accounts Receivable", "CURRENT", "ASSET", "other", "DEBTORS"),
    ("800", "Accounts Payable", "CURRLIAB", "LIABILITY", "other", "CREDITORS"),
    ("820", "GST", "CURRLIAB", "LIABILITY", "other", "GST"),
    ("860", "Rounding", "CURRLIAB", "LIABILITY", "other", "ROUNDING"),
]
_TYPE_CLASS = {
    "BANK": "ASSET", "CURRENT": "ASSET", "FIXED": "ASSET", "INVENTORY": "ASSET",
    "NONCURRENT": "ASSET", "PREPAYMENT": "ASSET", "EQUITY": "EQUITY",
    "DEPRECIATN": "EXPENSE", "DIRECTCOSTS": "EXPENSE", "EXPENSE": "EXPENSE",
    "OVERHEADS": "EXPENSE", "CURRLIAB": "LIABILITY", "LIABILITY": "LIABILITY",
    "TERMLIAB": "LIABILITY", "PAYGLIABILITY": "LIABILITY", "SUPERANNUATIONEXPENSE": "EXPENSE",
    "SUPERANNUATIONLIABILITY": "LIABILITY", "WAGESEXPENSE": "EXPENSE",
    "OTHERINCOME": "REVENUE", "REVENUE": "REVENUE", "SALES": "REVENUE",
}
# Account class -> the TaxRate flag saying whether the rate may be used with it (Xero's
# "Tax Rate Constraints": CanApplyToAssets/Equity/Expenses/Liabilities/Revenue).
_CLASS_FLAG = {"ASSET": "CanApplyToAssets", "EQUITY": "CanApplyToEquity",
               "EXPENSE": "CanApplyToExpenses", "LIABILITY": "CanApplyToLiabilities",
               "REVENUE": "CanApplyToRevenue"}
_FLAG_LETTERS = {"A": "CanApplyToAssets", "Q": "CanApplyToEquity", "X": "CanApplyToExpenses",
                 "L": "CanApplyToLiabilities", "R": "CanApplyToRevenue"}
# Messages as Xero sends them (XeroAPI/Xero-Java #336: both for an unknown TaxType on a
# line with an account; the second alone for a rate the account's type cannot use, as in
# the Tax Rate Constraints section of developer.xero.com/documentation/api/tax-rates).
TAX_TYPE_UNKNOWN = ("The TaxType code {tax_type} does not exist or cannot be used for this "
                    "type of transaction.")
TAX_TYPE_NOT_FOR_ACCOUNT = ("The TaxType code '{tax_type}' cannot be used with account code "
                            "'{code}'.")


@dataclass(frozen=True)
class Region:
    """A Xero organisation version: base currency and default tax rates.

    `rates`: (TaxType, Name, rate %, ReportTaxType or "" where the region has none,
    account types it applies to as letters A assets, Q equity, X expenses, L liabilities,
    R revenue). `account_tax`: the default TaxType per role of the chart's accounts."""

    code: str
    currency: str
    country: str
    component: str
    rates: tuple[tuple[str, str, str, str, str], ...]
    account_tax: dict[str, str]
    # TaxTypes Xero still accepts on lines but replaces (AU, 2013): {(type, "EXPENSE" or
    # "*"): replacement}.
    retired: dict[tuple[str, str], str] = field(default_factory=dict)


REGIONS: dict[str, Region] = {
    # specs/xero_accounting.yaml getTaxRates 200 example (an NZ organisation: the five
    # rates, names, ReportTaxTypes and CanApplyTo* flags as published).
    "NZ": Region("NZ", "NZD", "NZ", "GST", (
        ("INPUT2", "15% GST on Expenses", "15", "INPUT", "AQXL"),
        ("OUTPUT2", "15% GST on Income", "15", "OUTPUT", "AQLR"),
        ("GSTONIMPORTS", "GST on Imports", "0", "GSTONIMPORTS", "L"),
        ("NONE", "No GST", "0", "NONE", "AQXLR"),
        ("ZERORATED", "Zero Rated", "0", "OUTPUT", "LR"),
    ), {"sales": "OUTPUT2", "interest": "NONE", "purchases": "INPUT2", "other": "NONE"}),
    # developer.xero.com/documentation/api/tax-rates "Tax Rate Constraints", Australia
    # (types, names, flags); rates: 10 % GST on OUTPUT, INPUT, CAPEXINPUT.
    "AU": Region("AU", "AUD", "AU", "GST", (
        ("BASEXCLUDED", "BAS Excluded", "0", "BASEXCLUDED", "AQXLR"),
        ("EXEMPTCAPITAL", "GST Free Capital", "0", "EXEMPTCAPITAL", "AQXL"),
        ("EXEMPTEXPENSES", "GST Free Expenses", "0", "EXEMPTEXPENSES", "AQXL"),
        ("EXEMPTEXPORT", "GST Free Exports", "0", "EXEMPTEXPORT", "AQLR"),
        ("EXEMPTOUTPUT", "GST Free Income", "0", "EXEMPTOUTPUT", "AQLR"),
        ("CAPEXINPUT", "GST on Capital", "10", "CAPITALEXINPUT", "AQXL"),
        ("GSTONCAPIMPORTS", "GST on Capital Imports", "0", "GSTONCAPIMPORTS", "L"),
        ("INPUT", "GST on Expenses", "10", "INPUT", "AQXL"),
        ("GSTONIMPORTS", "GST on Imports", "0", "GSTONIMPORTS", "L"),
        ("OUTPUT", "GST on Income", "10", "OUTPUT", "AQLR"),
        ("INPUTTAXED", "Input Taxed", "0", "INPUTTAXED", "AQXLR"),
    ), {"sales": "OUTPUT", "interest": "INPUTTAXED", "purchases": "INPUT",
        "other": "BASEXCLUDED"},
        # developer.xero.com "Changes to tax codes in Australia" (25 March 2013): NONE on
        # an EXPENSE account -> EXEMPTEXPENSES, on any other account -> BASEXCLUDED;
        # EXEMPTINPUT on any account -> BASEXCLUDED.
        {("NONE", "EXPENSE"): "EXEMPTEXPENSES", ("NONE", "*"): "BASEXCLUDED",
         ("EXEMPTINPUT", "*"): "BASEXCLUDED"}),
    # help.xero.com/uk/Tax-SetDefaults (names and rates of the defaults); TaxTypes per the
    # spec's TaxType enum and Xero's UK list; OUTPUT2/INPUT2/NONE records (flags) as in
    # an exported UK organisation (docs.zynk.com, export-tax-rates). The flags of the
    # other UK rates follow the same pattern (income: not expenses; expenses: not
    # revenue): an assumption.
    "UK": Region("UK", "GBP", "GB", "VAT", (
        ("INPUT2", "20% (VAT on Expenses)", "20", "INPUT", "AQXL"),
        ("OUTPUT2", "20% (VAT on Income)", "20", "OUTPUT", "AQLR"),
        ("RRINPUT", "5% (VAT on Expenses)", "5", "INPUT", "AQXL"),
        ("RROUTPUT", "5% (VAT on Income)", "5", "OUTPUT", "AQLR"),
        ("EXEMPTINPUT", "Exempt Expenses", "0", "EXEMPTINPUT", "AQXL"),
        ("EXEMPTOUTPUT", "Exempt Income", "0", "EXEMPTOUTPUT", "AQLR"),
        ("NONE", "No VAT", "0", "NONE", "AQXLR"),
        ("GSTONIMPORTS", "VAT on Imports", "0", "GSTONIMPORTS", "L"),
        ("ECZRINPUT", "Zero Rated EC Expenses", "0", "ECINPUT", "AQXL"),
        ("ECZROUTPUT", "Zero Rated EC Goods Income", "0", "ECOUTPUT", "AQLR"),
        ("ECZROUTPUTSERVICES", "Zero Rated EC Services", "0", "ECOUTPUTSERVICES", "AQLR"),
        ("ZERORATEDINPUT", "Zero Rated Expenses", "0", "INPUT", "AQXL"),
        ("ZERORATEDOUTPUT", "Zero Rated Income", "0", "OUTPUT", "AQLR"),
    ), {"sales": "OUTPUT2", "interest": "NONE", "purchases": "INPUT2", "other": "NONE"}),
    # help.xero.com/us/Tax-SetDefaults (four defaults, all 0 %); types and flags as in
    # Xero's default list for US organisations (TradeGecko/eSwap integration notes). US
    # organisations have no ReportTaxType; sales tax rates are added (TAX001, TAX002 ...).
    "US": Region("US", "USD", "US", "Tax", (
        ("OUTPUT", "Tax on Sales", "0", "", "AQXLR"),
        ("GSTONIMPORTS", "Sales Tax on Imports", "0", "", "L"),
        ("NONE", "Tax Exempt", "0", "", "AQXLR"),
        ("INPUT", "Tax on Purchases", "0", "", "AQXLR"),
    ), {"sales": "OUTPUT", "interest": "NONE", "purchases": "INPUT", "other": "NONE"}),
}
DEFAULT_REGION = "NZ"


def _tax_rate_record(tax_type: str, name: str, rate: str, report: str, applies: str,
                     component: str) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "Name": name, "TaxType": tax_type, "Status": "ACTIVE",
        "TaxComponents": [{"Name": component, "Rate": float(rate), "IsCompound": False,
                           "IsNonRecoverable": False}],
        **{flag: letter in applies for letter, flag in _FLAG_LETTERS.items()},
        "DisplayTaxRate": float(rate), "EffectiveRate": float(rate), "_rate": rate,
    }
    if report:
        rec["ReportTaxType"] = report
    return rec


_CONTACT_RO = {"ContactID", "UpdatedDateUTC", "IsCustomer", "IsSupplier", "Balances",
               "HasAttachments", "HasValidationErrors", "StatusAttributeString",
               "ValidationErrors", "Warnings", "Website", "Discount", "MergedToContactID"}
_INVOICE_WRITABLE = {"Type", "Date", "DueDate", "Reference", "InvoiceNumber", "CurrencyCode",
                     "CurrencyRate", "BrandingThemeID", "Url", "SentToContact",
                     "ExpectedPaymentDate", "PlannedPaymentDate"}
_NOT_EDITABLE = "This document cannot be edited as it has a payment or credit note allocated to it."


class Books:
    def __init__(self, tenant_id: str, clock: Callable[[], float],
                 name: str | None = None, region: str = DEFAULT_REGION) -> None:
        self.tenant_id = tenant_id
        self.name = name or f"Demo Company ({tenant_id[:8]})"
        self.clock = clock
        self.region = REGIONS[region]
        self.contacts: dict[str, dict[str, Any]] = {}
        self.items: dict[str, dict[str, Any]] = {}
        self.accounts: dict[str, dict[str, Any]] = {}
        self.tax_rates: dict[str, dict[str, Any]] = {}
        self.invoices: dict[str, dict[str, Any]] = {}
        self.payments: dict[str, dict[str, Any]] = {}
        self.invoice_seq = 0
        # Organisation default sales terms (`PaymentTerms.Sales`); none unless seeded.
        self.sales_terms: dict[str, Any] | None = None
        now = clock()
        for code, nm, typ, cls, role, system in _DEFAULT_ACCOUNTS:
            acc: dict[str, Any] = {
                "AccountID": str(uuid.uuid4()), "Code": code, "Name": nm, "Type": typ,
                "Class": cls, "TaxType": "NONE", "Status": "ACTIVE",
                "EnablePaymentsToAccount": False, "ShowInExpenseClaims": False,
                "ReportingCode": "", "HasAttachments": False, "_updated": now, "_role": role,
            }
            if typ == "BANK":
                acc.update(BankAccountType="BANK", BankAccountNumber="0100000000000001")
            if system:
                acc["SystemAccount"] = system
            self.accounts[acc["AccountID"]] = acc
        self._apply_region()

    @property
    def base_currency(self) -> str:
        return self.region.currency

    def _apply_region(self) -> None:
        """The region's default tax rates, and its default tax type on each account."""
        r = self.region
        self.tax_rates = {t: _tax_rate_record(t, nm, rate, report, applies, r.component)
                          for t, nm, rate, report, applies in r.rates}
        accounts: dict[str, dict[str, Any]] = {}
        for aid, acc in self.accounts.items():
            acc = dict(acc)
            if acc.get("_role"):
                acc["TaxType"] = r.account_tax[acc["_role"]]
                if acc["Code"] == "820":
                    acc["Name"] = {"GST": "GST", "VAT": "VAT"}.get(r.component, "Sales Tax")
            if acc.get("Type") == "BANK":
                acc["CurrencyCode"] = r.currency
            accounts[aid] = acc
        self.accounts = accounts

    # -- snapshots (all-or-nothing batches) ------------------------------------------
    # Records are replaced on change, never mutated in place, so a snapshot only has to
    # copy the dicts that index them.
    def snapshot(self) -> dict[str, Any]:
        return {k: copy.copy(getattr(self, k)) for k in self._STATE}

    def restore(self, snap: dict[str, Any]) -> None:
        for k, v in snap.items():
            setattr(self, k, v)

    _STATE = ("contacts", "items", "accounts", "invoices", "payments", "invoice_seq",
              "tax_rates", "sales_terms", "region")

    # -- organisation settings (seed) ----------------------------------------------------
    def set_region(self, code: Any) -> list[str]:
        """`{"Region": "NZ"|"AU"|"UK"|"US"}`: the organisation's version, its default tax
        rates and accounts' default tax types. Only before any invoice is written."""
        region = REGIONS.get(str(code).upper())
        if region is None:
            return [f"Region must be one of {', '.join(REGIONS)}."]
        if region is self.region:
            return []
        if self.invoices:
            return ["The region can only be set before any invoice is written."]
        self.region = region
        self._apply_region()
        return []

    def set_organisation(self, el: dict[str, Any]) -> list[str]:
        """`{"PaymentTerms": {"Sales": {"Day": n, "Type": ...}}}`; errors as messages."""
        terms = (el.get("PaymentTerms") or {}).get("Sales") if isinstance(el, dict) else None
        if terms is None:
            self.sales_terms = None
            return []
        if (not isinstance(terms, dict) or terms.get("Type") not in PAYMENT_TERM_TYPES
                or not isinstance(terms.get("Day"), int) or terms["Day"] < 0):
            return [f"PaymentTerms.Sales must be {{Day: int >= 0, Type: one of "
                    f"{', '.join(PAYMENT_TERM_TYPES)}}}"]
        self.sales_terms = {"Day": terms["Day"], "Type": terms["Type"]}
        return []

    def add_tax_rate(self, el: dict[str, Any]) -> list[str]:
        """Seed (or change) a tax rate: `{"TaxType"?, "Name", "EffectiveRate",
        "CanApplyToRevenue"?, ...}`. Without a TaxType the next free `TAX001`, `TAX002`
        ... is given, as Xero does for rates an organisation adds; an existing TaxType is
        replaced (a rate edited in Xero)."""
        rate = el.get("EffectiveRate", el.get("DisplayTaxRate"))
        if rate is None:
            return ["A tax rate needs an EffectiveRate."]
        tax_type = str(el.get("TaxType") or "").upper()
        if not tax_type:
            n = 1
            while f"TAX{n:03d}" in self.tax_rates:
                n += 1
            tax_type = f"TAX{n:03d}"
        text = str(dec(rate).normalize())
        old = self.tax_rates.get(tax_type, {})
        applies = "".join(letter for letter, flag in _FLAG_LETTERS.items()
                          if el.get(flag, old.get(flag, True)))
        report = "" if self.region.code == "US" else str(
            el.get("ReportTaxType") or old.get("ReportTaxType") or "OUTPUT")
        self.tax_rates = dict(self.tax_rates)
        self.tax_rates[tax_type] = _tax_rate_record(
            tax_type, str(el.get("Name") or old.get("Name") or tax_type), text, report,
            applies, self.region.component)
        return []

    # -- lookups -----------------------------------------------------------------------
    def account_by_code(self, code: str) -> dict[str, Any] | None:
        return next((a for a in self.accounts.values()
                     if a["Code"].casefold() == code.casefold()), None)

    def item_by_code(self, code: str) -> dict[str, Any] | None:
        return next((i for i in self.items.values()
                     if i["Code"].casefold() == code.casefold()), None)

    def tax_rate(self, tax_type: str) -> Decimal | None:
        tr = self.tax_rates.get(tax_type.upper())
        return None if tr is None or tr["Status"] != "ACTIVE" else Decimal(tr["_rate"])

    def line_tax_type(self, tax_type: str, account: dict[str, Any] | None) -> str:
        """A retired TaxType the region still accepts, replaced (AU: NONE/EXEMPTINPUT)."""
        t = tax_type.upper()
        kind = "EXPENSE" if account is not None and account.get("Type") == "EXPENSE" else "*"
        return self.region.retired.get((t, kind)) or self.region.retired.get((t, "*")) or t

    def tax_type_errors(self, tax_type: str, account: dict[str, Any] | None) -> list[str]:
        """Xero's messages for a TaxType that does not exist, or that the account's type
        cannot use (CanApplyTo<Class> false)."""
        code = account["Code"] if account is not None else None
        if self.tax_rate(tax_type) is None:
            msgs = [TAX_TYPE_UNKNOWN.format(tax_type=tax_type)]
            if code is not None:
                msgs.append(TAX_TYPE_NOT_FOR_ACCOUNT.format(tax_type=tax_type, code=code))
            return msgs
        flag = _CLASS_FLAG.get(str((account or {}).get("Class")))
        if account is not None and flag and not self.tax_rates[tax_type.upper()].get(flag):
            return [TAX_TYPE_NOT_FOR_ACCOUNT.format(tax_type=tax_type, code=code)]
        return []

    # -- rendering ---------------------------------------------------------------------
    @staticmethod
    def _public(rec: dict[str, Any]) -> dict[str, Any]:
        out = {k: copy.deepcopy(v) for k, v in rec.items() if not k.startswith("_")}
        if "_updated" in rec:
            out["UpdatedDateUTC"] = msdate(rec["_updated"])
        return out

    def _roles(self) -> tuple[set[str], set[str]]:
        customers: set[str] = set()
        suppliers: set[str] = set()
        for i in self.invoices.values():
            if i["Status"] in ("AUTHORISED", "PAID"):
                (customers if i["Type"] == "ACCREC" else suppliers).add(i["Contact"]["ContactID"])
        return customers, suppliers

    def render_contact(self, c: dict[str, Any],
                       roles: tuple[set[str], set[str]] | None = None) -> dict[str, Any]:
        out = self._public(c)
        out["HasValidationErrors"] = False
        customers, suppliers = roles if roles is not None else self._roles()
        out["IsCustomer"] = c["ContactID"] in customers
        out["IsSupplier"] = c["ContactID"] in suppliers
        return out

    def render_contacts(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        roles = self._roles()
        return [self.render_contact(c, roles) for c in rows]

    def _payments_by_invoice(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for p in self.payments.values():
            if p["Status"] == "AUTHORISED":
                out.setdefault(p["Invoice"]["InvoiceID"], []).append(p)
        return out

    def render_invoices(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        index = self._payments_by_invoice()
        return [self.render_invoice(i, index) for i in rows]

    def render_item(self, i: dict[str, Any]) -> dict[str, Any]:
        out = self._public(i)
        out.setdefault("PurchaseDetails", {})
        out.setdefault("SalesDetails", {})
        return out

    def render_account(self, a: dict[str, Any]) -> dict[str, Any]:
        return self._public(a)

    def render_tax_rate(self, t: dict[str, Any]) -> dict[str, Any]:
        return self._public(t)

    def render_invoice(self, inv: dict[str, Any],
                       index: dict[str, list[dict[str, Any]]] | None = None) -> dict[str, Any]:
        out = self._public(inv)
        # Shape of the spec's createInvoices / getInvoices examples.
        out.setdefault("SentToContact", False)
        out.update(HasErrors=False, Prepayments=[], Overpayments=[],
                   UpdatedDateUTCString=iso_date(inv.get("_updated", self.clock())))
        for li in out.get("LineItems") or []:
            li.setdefault("Tracking", [])
        contact = self.contacts.get(inv["Contact"]["ContactID"])
        if contact is not None:
            out["Contact"] = {"ContactID": contact["ContactID"], "Name": contact.get("Name"),
                              "ContactStatus": contact.get("ContactStatus", "ACTIVE")}
            if contact.get("ContactNumber"):
                out["Contact"]["ContactNumber"] = contact["ContactNumber"]
        out["Payments"] = [
            {"PaymentID": p["PaymentID"], "Date": p["Date"], "Amount": p["Amount"],
             "Reference": p.get("Reference", ""), "CurrencyRate": p.get("CurrencyRate", 1.0),
             "HasAccount": True, "HasValidationErrors": False}
            for p in (index if index is not None else self._payments_by_invoice()).get(
                inv["InvoiceID"], [])
        ]
        return out

    def render_payment(self, p: dict[str, Any]) -> dict[str, Any]:
        out = self._public(p)
        out["UpdatedDateUTCString"] = iso_date(p.get("_updated", self.clock()))
        acc = self.accounts.get(str(p["Account"].get("AccountID", "")))
        if acc is not None:
            out["Account"] = {**out["Account"], "Name": acc.get("Name")}
        inv = self.invoices.get(p["Invoice"]["InvoiceID"])
        if inv is not None:
            # The invoice as it stands after the payment (spec createPayments example).
            full = self.render_invoice(inv, {})
            full.pop("Payments", None)
            full["Contact"] = {"ContactID": inv["Contact"]["ContactID"],
                               "Name": self.contacts.get(inv["Contact"]["ContactID"],
                                                         {}).get("Name")}
            out["Invoice"] = full
        return out

    def dump(self) -> dict[str, Any]:
        return {
            "tenantId": self.tenant_id,
            "tenantName": self.name,
            "Contacts": self.render_contacts(list(self.contacts.values())),
            "Items": [self.render_item(i) for i in self.items.values()],
            "Accounts": [self.render_account(a) for a in self.accounts.values()],
            "TaxRates": [self.render_tax_rate(t) for t in self.tax_rates.values()],
            "Invoices": self.render_invoices(list(self.invoices.values())),
            "Payments": [self.render_payment(p) for p in self.payments.values()],
        }

    # -- writes ------------------------------------------------------------------------
    def write(self, kind: str, element: Any, *, path_id: str | None = None,
              unitdp: int = 2, method: str = "POST") -> ElementResult:
        """Validate and apply one element; never raises for element-level problems."""
        schema = {"Contacts": "Contact", "Items": "Item", "Invoices": "Invoice",
                  "Payments": "Payment", "PaymentDelete": "PaymentDelete",
                  "Accounts": "Account"}[kind]
        if not isinstance(element, dict):
            return ElementResult(False, {"Element": element}, ["Element must be an object"])
        errors = openapi.element_errors(schema, element)
        if errors:
            return ElementResult(False, copy.deepcopy(element), errors)
        try:
            fn: Callable[..., dict[str, Any]] = {
                "Contacts": self._write_contact, "Items": self._write_item,
                "Invoices": self._write_invoice, "Payments": self._write_payment,
                "PaymentDelete": self._delete_payment, "Accounts": self._write_account,
            }[kind]
            rec = fn(element, path_id=path_id, unitdp=unitdp, method=method)
        except ElementError as exc:
            return ElementResult(False, copy.deepcopy(element), exc.messages)
        return ElementResult(True, rec)

    # Contacts --------------------------------------------------------------------------
    def _write_contact(self, el: dict[str, Any], *, path_id: str | None,
                       method: str = "POST", **_: Any) -> dict[str, Any]:
        target: dict[str, Any] | None = None
        cid = path_id or el.get("ContactID")
        if cid:
            target = self.contacts.get(str(cid).lower())
            if target is None:
                raise ElementError(f"Contact with ContactID {cid} could not be found.")
        elif el.get("ContactNumber") and method == "POST":
            num = str(el["ContactNumber"]).casefold()
            target = next((c for c in self.contacts.values()
                           if str(c.get("ContactNumber", "")).casefold() == num), None)
        merged: dict[str, Any] = copy.deepcopy(target) if target else {}
        for k, v in el.items():
            if k not in _CONTACT_RO:
                merged[k] = v
        name = merged.get("Name")
        if not isinstance(name, str) or not name.strip():
            raise ElementError("The contact name is required.")
        merged.setdefault("ContactStatus", "ACTIVE")
        self_id = target["ContactID"] if target else None
        if merged["ContactStatus"] == "ACTIVE":
            for c in self.contacts.values():
                if (c["ContactID"] != self_id and c.get("ContactStatus") == "ACTIVE"
                        and c["Name"].strip().casefold() == name.strip().casefold()):
                    raise ElementError(DUPLICATE_NAME.format(name=name))
        number = merged.get("ContactNumber")
        if number:
            for c in self.contacts.values():
                if (c["ContactID"] != self_id
                        and str(c.get("ContactNumber", "")).casefold() == str(number).casefold()):
                    raise ElementError(
                        f"The contact number {number} is already assigned to another contact.")
        merged["ContactID"] = self_id or str(uuid.uuid4())
        merged["_updated"] = self.clock()
        self.contacts[merged["ContactID"]] = merged
        return self.render_contact(merged)

    # Accounts (seed / PUT) ------------------------------------------------------------
    def _write_account(self, el: dict[str, Any], **_: Any) -> dict[str, Any]:
        code = el.get("Code")
        if not code:
            raise ElementError("Account code is required.")
        target = self.account_by_code(str(code))
        merged: dict[str, Any] = copy.deepcopy(target) if target else {
            "AccountID": str(uuid.uuid4()), "Status": "ACTIVE", "TaxType": "NONE",
            "EnablePaymentsToAccount": False, "HasAttachments": False}
        for k, v in el.items():
            if k not in ("AccountID", "Class", "UpdatedDateUTC", "ValidationErrors"):
                merged[k] = v
        typ = merged.get("Type")
        if typ not in _TYPE_CLASS:
            raise ElementError(f"Account Type {typ} is not valid.")
        merged["Class"] = _TYPE_CLASS[typ]
        if not merged.get("Name"):
            raise ElementError("Account name is required.")
        merged["_updated"] = self.clock()
        self.accounts[merged["AccountID"]] = merged
        return self.render_account(merged)

    # Items -----------------------------------------------------------------------------
    def _write_item(self, el: dict[str, Any], *, path_id: str | None, unitdp: int,
                    method: str = "POST", **_: Any) -> dict[str, Any]:
        target: dict[str, Any] | None = None
        iid = path_id or el.get("ItemID")
        code = el.get("Code")
        if iid:
            target = self.items.get(str(iid).lower())
            if target is None:
                raise ElementError(f"Item with ItemID {iid} could not be found.")
            if code and code.casefold() != target["Code"].casefold():
                other = self.item_by_code(code)
                if other is not None:
                    raise ElementError(f"Item code '{code}' already exists.")
        elif code:
            target = self.item_by_code(code)
            if target is not None and method == "PUT":
                raise ElementError(f"Item code '{code}' already exists.")
        if not code and not target:
            raise ElementError("Item code is required.")
        merged: dict[str, Any] = copy.deepcopy(target) if target else {
            "IsSold": True, "IsPurchased": True, "IsTrackedAsInventory": False}
        for k, v in el.items():
            if k not in ("ItemID", "UpdatedDateUTC", "ValidationErrors",
                         "StatusAttributeString", "TotalCostPool", "QuantityOnHand"):
                merged[k] = copy.deepcopy(v)
        for det_key in ("SalesDetails", "PurchaseDetails"):
            det = merged.get(det_key)
            if not isinstance(det, dict):
                continue
            if det.get("UnitPrice") is not None:
                det["UnitPrice"] = float(round_dp(dec(det["UnitPrice"]), unitdp))
            acc = det.get("AccountCode")
            account = self.account_by_code(str(acc)) if acc else None
            if acc and account is None:
                raise ElementError(f"Account code '{acc}' is not a valid code for this document.")
            tax = det.get("TaxType")
            if tax:
                det["TaxType"] = tax = self.line_tax_type(str(tax), account)
                msgs = self.tax_type_errors(tax, account)
                if msgs:
                    raise ElementError(*msgs)
        if merged.get("IsPurchased") is False:
            merged.pop("PurchaseDetails", None)
            merged.pop("PurchaseDescription", None)
        if merged.get("IsSold") is False:
            merged.pop("SalesDetails", None)
            merged.pop("Description", None)
        merged["ItemID"] = target["ItemID"] if target else str(uuid.uuid4())
        merged["_updated"] = self.clock()
        self.items[merged["ItemID"]] = merged
        return self.render_item(merged)

    def delete_item(self, item_id: str) -> bool:
        return self.items.pop(item_id.lower(), None) is not None

    # Invoices --------------------------------------------------------------------------
    def _resolve_contact(self, ref: Any) -> str:
        if not isinstance(ref, dict):
            raise ElementError("A Contact must be specified for this type of transaction.")
        cid = ref.get("ContactID")
        if cid:
            if str(cid).lower() not in self.contacts:
                raise ElementError(f"Contact with ContactID {cid} could not be found.")
            return str(cid).lower()
        if ref.get("ContactNumber"):
            num = str(ref["ContactNumber"]).casefold()
            for c in self.contacts.values():
                if str(c.get("ContactNumber", "")).casefold() == num:
                    return str(c["ContactID"])
        if ref.get("Name"):
            nm = str(ref["Name"]).strip().casefold()
            for c in self.contacts.values():
                if c.get("ContactStatus") == "ACTIVE" and c["Name"].strip().casefold() == nm:
                    return str(c["ContactID"])
        raise ElementError("The Contact could not be found; supply an existing ContactID.")

    def _build_lines(self, raw_lines: list[dict[str, Any]], amount_types: str, unitdp: int,
                     status: str) -> tuple[list[dict[str, Any]], list[str]]:
        errs: list[str] = []
        lines: list[dict[str, Any]] = []
        for n, raw in enumerate(raw_lines, start=1):
            line: dict[str, Any] = {"LineItemID": str(raw.get("LineItemID") or uuid.uuid4())}
            item = None
            if raw.get("ItemCode"):
                item = self.item_by_code(str(raw["ItemCode"]))
                if item is None:
                    errs.append(f"Item code '{raw['ItemCode']}' is not valid.")
                    continue
                line["ItemCode"] = item["Code"]
                line["Item"] = {"ItemID": item["ItemID"], "Code": item["Code"],
                                "Name": item.get("Name", "")}
            sales = (item or {}).get("SalesDetails") or {}
            desc = raw.get("Description", (item or {}).get("Description"))
            if desc is not None:
                line["Description"] = desc
            sent_amount = dec(raw["LineAmount"]) if raw.get("LineAmount") is not None else None
            derived = False  # Quantity or UnitAmount computed from the sent LineAmount
            if raw.get("UnitAmount") is not None:
                unit = round_dp(dec(raw["UnitAmount"]), unitdp)
            elif sales.get("UnitPrice") is not None:
                unit = round_dp(dec(sales["UnitPrice"]), unitdp)
            else:
                unit = None
            if raw.get("Quantity") is not None:
                qty = round_dp(dec(raw["Quantity"]), 4)
            elif sent_amount is not None and unit:
                qty, derived = round_dp(sent_amount / unit, 4), True
            else:
                qty = Decimal(1)
            if unit is None:
                if sent_amount is not None and qty != 0:
                    unit, derived = round_dp(sent_amount / qty, unitdp), True
                else:
                    unit = Decimal(0)
            discount = dec(raw.get("DiscountRate") or 0)
            if not Decimal(0) <= discount <= Decimal(100):
                errs.append(f"Line {n}: DiscountRate must be between 0 and 100.")
                continue
            account = raw.get("AccountCode") or sales.get("AccountCode")
            acc: dict[str, Any] | None = None
            if account:
                acc = self.account_by_code(str(account))
                if acc is None:
                    errs.append(f"Account code '{account}' is not a valid code for this document.")
                    continue
                line["AccountCode"] = acc["Code"]
            elif status not in ("DRAFT",):
                errs.append("Account code must be specified for each line item "
                            "on an approved invoice.")
                continue
            # The line's TaxType, else the item's, else the account's default; the rate
            # Xero applies is that TaxType's own (GET /TaxRates EffectiveRate).
            tax_type = raw.get("TaxType") or sales.get("TaxType") or (acc or {}).get("TaxType")
            if amount_types == "NoTax":
                tax_type = tax_type or "NONE"
            tax_type = self.line_tax_type(
                str(tax_type or self.region.account_tax["sales"]), acc)
            tax_errs = self.tax_type_errors(tax_type, acc)
            if tax_errs:
                errs.extend(tax_errs)
                continue
            rate = self.tax_rate(tax_type)
            assert rate is not None
            override = dec(raw["TaxAmount"]) if raw.get("TaxAmount") is not None else None
            amount, tax, disc = line_totals(qty, unit, discount, rate, amount_types, override)
            if sent_amount is not None and not derived and sent_amount != amount:
                # A sent LineAmount must equal Xero's own Quantity x UnitAmount x
                # (1 - DiscountRate/100), to 2 dp (Xero-NetStandard #74, #412).
                errs.append(LINE_TOTAL_MISMATCH.format(sent=_money_text(sent_amount),
                                                       expected=_money_text(amount)))
                continue
            line.update(Quantity=float(qty), UnitAmount=float(unit), TaxType=tax_type,
                        TaxAmount=float(tax), LineAmount=float(amount))
            if discount:
                line["DiscountRate"] = float(discount)
                line["DiscountAmount"] = float(disc)
            if raw.get("Tracking"):
                line["Tracking"] = copy.deepcopy(raw["Tracking"])
            lines.append(line)
        return lines, errs

    def _recompute(self, inv: dict[str, Any]) -> None:
        amount_types = inv["LineAmountTypes"]
        line_sum = sum((dec(li["LineAmount"]) for li in inv["LineItems"]), Decimal("0.00"))
        tax = sum((dec(li["TaxAmount"]) for li in inv["LineItems"]), Decimal("0.00"))
        disc = sum((dec(li.get("DiscountAmount", 0)) for li in inv["LineItems"]),
                   Decimal("0.00"))
        if amount_types == "Inclusive":
            sub, total = line_sum - tax, line_sum
        else:
            sub, total = line_sum, line_sum + tax
        paid = sum((dec(p["Amount"]) for p in self.payments.values()
                    if p["Invoice"]["InvoiceID"] == inv["InvoiceID"]
                    and p["Status"] == "AUTHORISED"), Decimal("0.00"))
        inv.update(SubTotal=float(round_dp(sub, 2)), TotalTax=float(round_dp(tax, 2)),
                   Total=float(round_dp(total, 2)), TotalDiscount=float(round_dp(disc, 2)),
                   AmountPaid=float(round_dp(paid, 2)),
                   AmountDue=float(round_dp(total - paid, 2)), AmountCredited=0.0,
                   IsDiscounted=disc > 0)

    def _date_field(self, el: dict[str, Any], key: str, errs: list[str]) -> float | None:
        v = el.get(key)
        if v in (None, ""):
            return None
        ts = parse_xero_date(str(v))
        if ts is None:
            errs.append(f"{key} '{v}' is not a valid date.")
        return ts

    def _sales_terms(self, inv: dict[str, Any]) -> dict[str, Any] | None:
        """The contact's own sales terms, else the organisation's default ones."""
        contact = self.contacts.get(str((inv.get("Contact") or {}).get("ContactID", "")))
        own = ((contact or {}).get("PaymentTerms") or {}).get("Sales")
        if isinstance(own, dict) and own.get("Type") in PAYMENT_TERM_TYPES:
            return own
        return self.sales_terms

    def _write_invoice(self, el: dict[str, Any], *, path_id: str | None, unitdp: int,
                       **_: Any) -> dict[str, Any]:
        iid = path_id or el.get("InvoiceID")
        target: dict[str, Any] | None = None
        if iid:
            target = self.invoices.get(str(iid).lower())
            if target is None:
                raise ElementError(f"Invoice with InvoiceID {iid} could not be found.")
        errs: list[str] = []
        if target is None:
            typ = el.get("Type")
            if typ not in ("ACCREC", "ACCPAY"):
                raise ElementError("Invoice Type must be ACCREC or ACCPAY in this simulator."
                                   if typ else "Invoice Type must be specified.")
            inv: dict[str, Any] = {"InvoiceID": str(uuid.uuid4()), "Type": typ,
                                   "Status": "DRAFT", "LineAmountTypes": "Exclusive",
                                   "CurrencyCode": self.base_currency, "CurrencyRate": 1.0,
                                   "LineItems": [], "HasAttachments": False,
                                   "Reference": "", "_created": self.clock()}
            old_status = None
        else:
            inv = copy.deepcopy(target)
            old_status = inv["Status"]
            if old_status in ("VOIDED", "DELETED"):
                raise ElementError(f"This document cannot be edited as it has a status of "
                                   f"{old_status}.")
        new_status = el.get("Status", inv["Status"])
        paid = target is not None and dec(target.get("AmountPaid", 0)) > 0
        # status transitions
        if target is None:
            if new_status not in ("DRAFT", "SUBMITTED", "AUTHORISED"):
                raise ElementError(f"Invoice cannot be created with a status of {new_status}.")
        elif new_status != old_status:
            allowed = {
                "DRAFT": {"SUBMITTED", "AUTHORISED", "DELETED"},
                "SUBMITTED": {"DRAFT", "AUTHORISED", "DELETED"},
                "AUTHORISED": {"VOIDED"},
                "PAID": set(),
            }.get(str(old_status), set())
            if new_status not in allowed:
                if new_status == "DELETED":
                    raise ElementError("Only DRAFT or SUBMITTED invoices can be deleted; "
                                       "void an AUTHORISED invoice instead.")
                if new_status == "VOIDED" and old_status in ("DRAFT", "SUBMITTED"):
                    raise ElementError("Only AUTHORISED invoices can be voided; delete a "
                                       "DRAFT or SUBMITTED invoice instead.")
                if old_status == "PAID" or (new_status == "VOIDED" and paid):
                    raise ElementError(_NOT_EDITABLE)
                raise ElementError(f"Invoice status cannot change from {old_status} to "
                                   f"{new_status}.")
            if new_status == "VOIDED" and paid:
                raise ElementError(_NOT_EDITABLE)
        # contact
        if "Contact" in el or target is None:
            try:
                inv["Contact"] = {"ContactID": self._resolve_contact(el.get("Contact"))}
            except ElementError as exc:
                errs.extend(exc.messages)
            if paid and target is not None and inv.get("Contact") != target["Contact"]:
                errs.append(_NOT_EDITABLE)
        for k in _INVOICE_WRITABLE:
            if k in el and k not in ("Date", "DueDate", "ExpectedPaymentDate",
                                     "PlannedPaymentDate"):
                inv[k] = el[k]
        for key in ("Date", "DueDate", "ExpectedPaymentDate", "PlannedPaymentDate"):
            ts = self._date_field(el, key, errs)
            if ts is not None:
                inv[key] = msdate(_day(ts))
                inv[key + "String"] = iso_date(_day(ts))
        if "Date" not in inv:
            inv["Date"] = msdate(_day(self.clock()))
            inv["DateString"] = iso_date(_day(self.clock()))
        if "LineAmountTypes" in el:
            if paid and el["LineAmountTypes"] != inv["LineAmountTypes"]:
                errs.append(_NOT_EDITABLE)
            inv["LineAmountTypes"] = el["LineAmountTypes"]
        if "LineItems" in el:
            if paid:
                errs.append(_NOT_EDITABLE)
            lines, line_errs = self._build_lines(el["LineItems"], inv["LineAmountTypes"],
                                                 unitdp, str(new_status))
            errs.extend(line_errs)
            inv["LineItems"] = lines
        elif "LineAmountTypes" in el and target is not None:
            stored = [{k: v for k, v in li.items()
                       if k not in ("TaxAmount", "LineAmount", "DiscountAmount", "Item")}
                      for li in inv["LineItems"]]
            lines, line_errs = self._build_lines(stored, inv["LineAmountTypes"], 4,
                                                 str(new_status))
            errs.extend(line_errs)
            inv["LineItems"] = lines
        if new_status not in ("DRAFT", "DELETED", "VOIDED"):
            if not inv["LineItems"]:
                errs.append("At least one line item is required to approve an invoice.")
            for li in inv["LineItems"]:
                if not li.get("AccountCode"):
                    errs.append("Account code must be specified for each line item "
                                "on an approved invoice.")
                    break
        # number
        if inv["Type"] == "ACCREC":
            if not inv.get("InvoiceNumber"):
                self.invoice_seq += 1
                inv["InvoiceNumber"] = f"INV-{self.invoice_seq:04d}"
            num = str(inv["InvoiceNumber"]).casefold()
            for other in self.invoices.values():
                if (other["InvoiceID"] != inv["InvoiceID"] and other["Type"] == "ACCREC"
                        and other["Status"] != "DELETED"
                        and str(other.get("InvoiceNumber", "")).casefold() == num):
                    errs.append("Invoice # must be unique.")
                    break
        if not inv.get("DueDate"):
            terms = self._sales_terms(inv)
            due = (due_date_from_terms(parse_xero_date(inv["Date"]) or self.clock(), terms)
                   if terms else None)
            if due is not None:
                inv["DueDate"], inv["DueDateString"] = msdate(due), iso_date(due)
            elif new_status == "AUTHORISED":
                # No DueDate and no default terms (contact's or organisation's): refused.
                errs.append(DUE_DATE_REQUIRED)
        if errs:
            raise ElementError(*dict.fromkeys(errs))
        inv["Status"] = new_status
        self._recompute(inv)
        inv["_updated"] = self.clock()
        self.invoices[inv["InvoiceID"]] = inv
        return self.render_invoice(inv)

    # Payments --------------------------------------------------------------------------
    def _write_payment(self, el: dict[str, Any], *, path_id: str | None, **_: Any
                       ) -> dict[str, Any]:
        if path_id is not None:
            return self._delete_payment(el, path_id=path_id)
        if el.get("PaymentID"):
            pid = str(el["PaymentID"]).lower()
            if pid in self.payments and el.get("Status") == "DELETED":
                return self._delete_payment(el, path_id=pid)
            raise ElementError("Payments cannot be edited; delete and re-create them.")
        ref = el.get("Invoice") or {}
        inv: dict[str, Any] | None = None
        if ref.get("InvoiceID"):
            inv = self.invoices.get(str(ref["InvoiceID"]).lower())
        elif ref.get("InvoiceNumber") or el.get("InvoiceNumber"):
            num = str(ref.get("InvoiceNumber") or el.get("InvoiceNumber")).casefold()
            inv = next((i for i in self.invoices.values()
                        if str(i.get("InvoiceNumber", "")).casefold() == num), None)
        else:
            raise ElementError("You must specify an Invoice, CreditNote, Prepayment or "
                               "Overpayment for the payment.")
        if inv is None:
            raise ElementError("Invoice could not be found.")
        errs: list[str] = []
        if inv["Status"] != "AUTHORISED":
            errs.append("Payment can only be made against invoices with a status of AUTHORISED "
                        f"(this invoice is {inv['Status']}).")
        acc_ref = el.get("Account") or {}
        acc: dict[str, Any] | None = None
        if acc_ref.get("AccountID"):
            acc = self.accounts.get(str(acc_ref["AccountID"]).lower())
        elif acc_ref.get("Code"):
            acc = self.account_by_code(str(acc_ref["Code"]))
        if acc is None:
            errs.append("Account could not be found; supply Account.Code or Account.AccountID.")
        elif acc["Type"] != "BANK" and not acc.get("EnablePaymentsToAccount"):
            errs.append("Account type is invalid for making a payment to/from.")
        amount = round_dp(dec(el.get("Amount", 0)), 2)
        if amount <= 0:
            errs.append("Payment amount must be greater than zero.")
        elif inv["Status"] == "AUTHORISED" and amount > dec(inv["AmountDue"]):
            errs.append("Payment amount exceeds the amount outstanding on this document.")
        date_ts = self._date_field(el, "Date", errs)
        if errs:
            raise ElementError(*errs)
        assert acc is not None
        day = _day(date_ts if date_ts is not None else self.clock())
        pay: dict[str, Any] = {
            "PaymentID": str(uuid.uuid4()), "Date": msdate(day), "Amount": float(amount),
            "BankAmount": float(amount), "Reference": el.get("Reference", ""),
            "CurrencyRate": float(el.get("CurrencyRate") or inv.get("CurrencyRate") or 1.0),
            "PaymentType": "ACCRECPAYMENT" if inv["Type"] == "ACCREC" else "ACCPAYPAYMENT",
            "Status": "AUTHORISED", "IsReconciled": bool(el.get("IsReconciled", False)),
            "HasAccount": True, "HasValidationErrors": False,
            "Account": {"AccountID": acc["AccountID"], "Code": acc["Code"]},
            "Invoice": {"InvoiceID": inv["InvoiceID"]}, "_updated": self.clock(),
        }
        self.payments[pay["PaymentID"]] = pay
        self._after_payment_change(inv["InvoiceID"], day)
        return self.render_payment(pay)

    def _after_payment_change(self, invoice_id: str, day: float | None) -> None:
        old = self.invoices.get(invoice_id)
        if old is None:
            return
        inv = copy.deepcopy(old)  # records are replaced, never mutated (cheap snapshots)
        self.invoices[invoice_id] = inv
        self._recompute(inv)
        if dec(inv["AmountDue"]) == 0 and dec(inv["Total"]) > 0:
            inv["Status"] = "PAID"
            if day is not None:
                inv["FullyPaidOnDate"] = msdate(day)
        elif inv["Status"] == "PAID":
            inv["Status"] = "AUTHORISED"
            inv.pop("FullyPaidOnDate", None)
        inv["_updated"] = self.clock()

    def _delete_payment(self, el: dict[str, Any], *, path_id: str | None = None, **_: Any
                        ) -> dict[str, Any]:
        pay = self.payments.get(str(path_id).lower()) if path_id else None
        if pay is None:
            raise ElementError("Payment could not be found.")
        if el.get("Status") != "DELETED":
            raise ElementError("Only Status DELETED can be set on an existing payment.")
        if pay["Status"] == "DELETED":
            raise ElementError("This payment has already been deleted.")
        pay = copy.deepcopy(pay)
        pay["Status"] = "DELETED"
        pay["_updated"] = self.clock()
        self.payments[pay["PaymentID"]] = pay
        self._after_payment_change(pay["Invoice"]["InvoiceID"], None)
        return self.render_payment(pay)
