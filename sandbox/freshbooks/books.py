"""In-memory FreshBooks books: accounts, clients, items, taxes, invoices, payments, ledger.

Pure, synchronous domain logic; the HTTP layer (app.py) adds auth, limits and faults.
Stored records are plain dicts already in FreshBooks' reply shape; ``render_*`` adds
derived fields.

Choices where FreshBooks publishes nothing (providers.md marks them [unconf]):

- ``updated`` is written in US Eastern time like the fixtures (``signup_date`` is UTC,
  ``updated`` five hours behind), ``search[updated_min]``/``[updated_max]`` compare the
  date part of ``updated`` (day granularity, ``min`` inclusive, ``max`` exclusive).
- Lists hide deleted records (vis_state 1) unless ``search[vis_state]=1`` is given.
- No uniqueness rule for clients, items or invoice numbers (duplicates are accepted);
  tax names are unique (errno 1026).
- Invoice arithmetic: line amount = round2(qty * unit_cost); the invoice discount
  percent reduces every line's taxable base; tax1 = round2(base * taxAmount1 / 100);
  tax2 = round2((base + tax1 if compound else base) * taxAmount2 / 100), where tax2 is
  compound when the line says ``compounded_tax: true`` or the account's tax named
  ``taxName2`` has ``compound: true``; discount_total = round2(subtotal * discount / 100);
  total = subtotal - discount_total + sum(line taxes). ROUND_HALF_UP throughout. That a
  compound tax stacks on the primary one is documented (freshbooks.com/api/taxes,
  ``compound``: "compound taxes are calculated on top of primary taxes"); the per-line
  rounding, the rounded tax1 under tax2 and the flags that make tax2 compound are not.
- Regions (``set_region``, README "Regions"): which taxes a new business starts with is
  not published; US seeds none, CA the federal and provincial taxes (``REGION_TAXES``).
- A line's tax name need not be one of the business's taxes (free-form name + percent).
- Overpayment: the payment keeps the full amount; the part above the invoice's
  outstanding becomes a credit whose id is the payment's ``overpaymentid``.
- Ledger account creation requires ``name``, ``sub_type`` and ``parent_account`` (the
  three fields of the validation fixture); ``type`` defaults to the parent's type.
- FreshBooks has no void: "delete" is vis_state 1 (HTTP DELETE on invoices and taxes,
  as the SDK does, is accepted too).

Rules with a public source (see README.md for the full rule -> source -> test table):

- Update phases (freshbooks.com/api/active_deleted, "Updates and vis_state"): a PUT
  applies ONE phase, the first present of ``ext_vis_state``, ``vis_state``, actions
  (``action_*``, e.g. ``action_mark_as_sent``, ``action_email``), regular fields; the
  other fields are discarded silently, even when ``vis_state`` is unchanged.
- An invoice with live payments cannot be deleted (FreshBooks Postman collection
  "Delete Invoice": delete the payments or convert them to credit first). The error's
  shape is not published: the simulator answers 422 errno 1004 on ``vis_state``
  [assumption].
"""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from .errors import accounting_error, ledger_error

__all__ = ["PAYMENT_TYPES", "REGIONS", "REGION_TAXES", "Account", "Books", "invoice_totals",
           "money"]

try:
    from zoneinfo import ZoneInfo

    _EASTERN: tzinfo = ZoneInfo("America/New_York")
except Exception:  # pragma: no cover - tzdata missing
    _EASTERN = timezone(timedelta(hours=-5))

CENT = Decimal("0.01")
PAYMENT_TYPES = (
    "Check", "Credit", "Credit Card", "Bank Transfer", "Debit", "PayPal", "2Checkout",
    "VISA", "MASTERCARD", "DISCOVER", "NOVA", "AMEX", "DINERS", "EUROCARD", "JCB", "ACH",
)
STATUS_NAMES = {0: "disputed", 1: "draft", 2: "sent", 3: "viewed", 4: "paid",
                5: "auto-paid", 6: "retry", 7: "failed", 8: "partial"}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_ACCOUNT_ID = re.compile(r"^[A-Za-z0-9]{1,32}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

DEFAULT_LEDGER: list[tuple[str, str, str, str]] = [
    # (number, name, type, sub_type) -- type strings [unconf]: the fixtures only show
    # "asset"; income accounts use "income".
    ("1000", "Cash", "asset", "Cash & Bank"),
    ("1200", "Accounts Receivable", "asset", "Accounts Receivable"),
    ("2000", "Accounts Payable", "liability", "Accounts Payable"),
    ("2100", "Sales Taxes Payable", "liability", "Taxes Payable"),
    ("3000", "Owner's Equity", "equity", "Owner's Equity"),
    ("4000", "Sales", "income", "Sales"),
    ("4010", "Services", "income", "Sales"),
    ("4100", "Other Income", "income", "Other Income"),
    ("5000", "Cost of Goods Sold", "cost_of_goods_sold", "Cost of Goods Sold"),
    ("6000", "Office Expenses", "expense", "Office Expenses"),
]


REGIONS = ("US", "CA")
# The taxes a business of each region has defined (README "Regions"). FreshBooks keeps
# taxes per business (freshbooks.com/api/taxes: name, amount as a percent string, number,
# compound); which ones a new business starts with is not published, so a region's list is
# what a real business there would have created: none in the US (state and local sales
# taxes are the owner's to add), the Canadian federal and provincial rates in CA at the
# rates FreshBooks itself charges (support.freshbooks.com article 115001736328: GST 5%,
# HST 13% Ontario and 15% New Brunswick, Quebec 14.975% = 5% GST + 9.975% QST, i.e. QST
# on the price alone, not compound), and BC/Manitoba PST 7% [2nd: canada.ca, province
# pages]. (name, amount, number, compound)
REGION_TAXES: dict[str, tuple[tuple[str, str, str | None, bool], ...]] = {
    "US": (),
    "CA": (
        ("GST", "5", "123456789 RT0001", False),
        ("HST ON", "13", "123456789 RT0001", False),
        ("HST NB", "15", "123456789 RT0001", False),
        ("PST BC", "7", "PST-1234-5678", False),
        ("QST", "9.975", "1234567890 TQ0001", False),
    ),
}
REGION_CURRENCY = {"US": "USD", "CA": "CAD"}


def now_utc() -> datetime:
    return datetime.now(UTC)


def eastern_stamp(at: datetime | None = None) -> str:
    return (at or now_utc()).astimezone(_EASTERN).strftime("%Y-%m-%d %H:%M:%S")


def utc_stamp(at: datetime | None = None) -> str:
    return (at or now_utc()).strftime("%Y-%m-%d %H:%M:%S")


def q2(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def money(value: Decimal, code: str) -> dict[str, str]:
    return {"amount": f"{q2(value):.2f}", "code": code}


def dec(value: Any, field_name: str, object_: str, *, errno: int = 1004) -> Decimal:
    if isinstance(value, bool) or value is None or value == "":
        raise accounting_error(errno, f"Invalid value for {field_name}.", field=field_name,
                               object_=object_, value=value)
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        raise accounting_error(errno, f"Invalid value for {field_name}.", field=field_name,
                               object_=object_, value=value) from None
    if not d.is_finite():
        raise accounting_error(errno, f"Invalid value for {field_name}.", field=field_name,
                               object_=object_, value=value)
    return d


def percent(value: Any, field_name: str, object_: str) -> Decimal:
    """A percent given as a decimal (string or number), at most 3 dp, 0..100."""
    if value is None or value == "":
        return Decimal(0)
    d = dec(value, field_name, object_, errno=1018)
    exp = d.as_tuple().exponent
    if (isinstance(exp, int) and exp < -3) or d < 0 or d > 100:
        raise accounting_error(1018, "Percent values should be strings formatted as decimals.",
                               field=field_name, object_=object_, value=value)
    return d


def required(body: dict[str, Any], name: str, object_: str) -> Any:
    value = body.get(name)
    if value is None or value == "":
        raise accounting_error(1001, f"Field {name} is required.", field=name,
                               object_=object_)
    return value


def parse_day(value: Any, field_name: str, object_: str) -> date:
    if not isinstance(value, str) or not _DATE.match(value):
        raise accounting_error(1004, f"Invalid date for {field_name}.", field=field_name,
                               object_=object_, value=value)
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise accounting_error(1004, f"Invalid date for {field_name}.", field=field_name,
                               object_=object_, value=value) from None


def as_int(value: Any, field_name: str, object_: str) -> int:
    if isinstance(value, bool):
        raise accounting_error(1004, f"Invalid value for {field_name}.", field=field_name,
                               object_=object_, value=value)
    try:
        return int(str(value))
    except ValueError:
        raise accounting_error(1004, f"Invalid value for {field_name}.", field=field_name,
                               object_=object_, value=value) from None


def update_phase(body: dict[str, Any]) -> str:
    """Which single phase a PUT applies (freshbooks.com/api/active_deleted): the first of
    ``ext_vis_state``, ``vis_state``, ``action`` (any ``action_*`` key), ``data``."""
    if "ext_vis_state" in body:
        return "ext_vis_state"
    if "vis_state" in body:
        return "vis_state"
    if any(key.startswith("action_") for key in body):
        return "action"
    return "data"


def check_vis_state(value: Any, object_: str, allowed: tuple[int, ...] = (0, 1, 2)) -> int:
    if isinstance(value, bool) or value not in allowed:
        raise accounting_error(1004, "Invalid value for vis_state.", field="vis_state",
                               object_=object_, value=value)
    return int(value)


def valid_account_id(account_id: str) -> bool:
    return bool(_ACCOUNT_ID.match(account_id))


@dataclass
class Account:
    account_id: str
    business_id: int
    business_uuid: str
    identity_id: int
    name: str
    currency_code: str = "USD"
    region: str = "US"
    clients: dict[int, dict[str, Any]] = field(default_factory=dict)
    items: dict[int, dict[str, Any]] = field(default_factory=dict)
    taxes: dict[int, dict[str, Any]] = field(default_factory=dict)
    invoices: dict[int, dict[str, Any]] = field(default_factory=dict)
    payments: dict[int, dict[str, Any]] = field(default_factory=dict)
    credits: dict[int, dict[str, Any]] = field(default_factory=dict)
    ledger: dict[str, dict[str, Any]] = field(default_factory=dict)
    invoice_seq: int = 0


def invoice_totals(
    lines: list[dict[str, Any]], discount_value: Decimal, compound_names: set[str]
) -> dict[str, Any]:
    """Totals of an invoice (see module docstring); returns Decimals and per-line amounts."""
    subtotal = Decimal(0)
    tax_total = Decimal(0)
    line_amounts: list[Decimal] = []
    factor = (Decimal(100) - discount_value) / Decimal(100)
    for line in lines:
        amount = q2(Decimal(line["qty"]) * Decimal(line["unit_cost"]["amount"]))
        line_amounts.append(amount)
        subtotal += amount
        base = amount * factor
        tax1 = q2(base * Decimal(str(line.get("taxAmount1") or 0)) / 100)
        compound = bool(line.get("compounded_tax")) or (
            str(line.get("taxName2") or "").strip().lower() in compound_names
        )
        base2 = base + tax1 if compound else base
        tax2 = q2(base2 * Decimal(str(line.get("taxAmount2") or 0)) / 100)
        tax_total += tax1 + tax2
    discount_total = q2(subtotal * discount_value / 100)
    total = subtotal - discount_total + tax_total
    return {"subtotal": subtotal, "discount_total": discount_total,
            "tax_total": tax_total, "total": total, "line_amounts": line_amounts}


class Books:
    """All accounts of one simulator instance."""

    def __init__(self) -> None:
        self.accounts: dict[str, Account] = {}
        self._next_id = 100000

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    # ---- accounts ---------------------------------------------------------------
    def account(self, account_id: str) -> Account:
        acct = self.accounts.get(account_id)
        if acct is None:
            acct = Account(
                account_id=account_id,
                business_id=self.new_id(),
                business_uuid=str(uuid.uuid5(uuid.NAMESPACE_URL, f"freshbooks:{account_id}")),
                identity_id=self.new_id(),
                name=f"Business {account_id}",
            )
            for number, name, type_, sub_type in DEFAULT_LEDGER:
                self._add_ledger(acct, {"number": number, "name": name, "type": type_,
                                        "sub_type": sub_type}, auto=True)
            self.accounts[account_id] = acct
        return acct

    def set_region(self, acct: Account, region: str, currency_code: str | None) -> None:
        """Make the business one of `region` (REGION_TAXES): its currency and the taxes
        a business there has defined (added once; taxes already named so are kept)."""
        acct.region = region
        acct.currency_code = currency_code or REGION_CURRENCY[region]
        names = {t["name"].strip().lower() for t in acct.taxes.values()}
        for name, amount, number, compound in REGION_TAXES[region]:
            if name.lower() not in names:
                self.create_tax(acct, {"name": name, "amount": amount, "number": number,
                                       "compound": compound})

    def by_business_uuid(self, business_uuid: str) -> Account | None:
        for acct in self.accounts.values():
            if acct.business_uuid == business_uuid:
                return acct
        return None

    # ---- clients ----------------------------------------------------------------
    CLIENT_FIELDS = ("fname", "lname", "email", "organization", "currency_code",
                     "p_street", "p_street2", "p_city", "p_province", "p_code", "p_country",
                     "s_street", "s_street2", "s_city", "s_province", "s_code", "s_country",
                     "home_phone", "bus_phone", "mob_phone", "fax", "note", "language",
                     "vat_name", "vat_number")

    def _check_client_fields(self, body: dict[str, Any]) -> None:
        for name in self.CLIENT_FIELDS:
            value = body.get(name)
            if value is not None and not isinstance(value, str):
                raise accounting_error(1004, f"Invalid value for {name}.", field=name,
                                       object_="client", value=value)
        email = body.get("email")
        if email and not _EMAIL.match(email):
            raise accounting_error(1004, "Invalid email address.", field="email",
                                   object_="client", value=email)
        code = body.get("currency_code")
        if code and not re.match(r"^[A-Z]{3}$", code):
            raise accounting_error(1004, "Invalid currency code.", field="currency_code",
                                   object_="client", value=code)

    def create_client(self, acct: Account, body: dict[str, Any],
                      updated: str | None = None) -> dict[str, Any]:
        self._check_client_fields(body)
        fname = body.get("fname") or ""
        lname = body.get("lname") or ""
        email = body.get("email") or ""
        organization = body.get("organization") or f"{fname} {lname}".strip() or email
        if not organization:
            raise accounting_error(1001, "Field organization is required.",
                                   field="organization", object_="client")
        cid = self.new_id()
        stamp = now_utc()
        client: dict[str, Any] = {
            "accounting_systemid": acct.account_id,
            "allow_email_include_pdf": False, "allow_late_fees": True,
            "allow_late_notifications": True, "bus_phone": "", "company_industry": None,
            "company_size": None, "currency_code": acct.currency_code,
            "direct_link_token": None, "email": email, "fax": "", "fname": fname,
            "has_retainer": None, "home_phone": None, "id": cid, "language": "en",
            "last_activity": None, "last_login": None, "level": 0, "lname": lname,
            "mob_phone": "", "note": None, "notified": False, "num_logins": 0,
            "organization": organization, "p_city": "", "p_code": "", "p_country": "",
            "p_province": "", "p_street": "", "p_street2": "", "pref_email": True,
            "pref_gmail": False, "retainer_id": None, "role": "client", "s_city": "",
            "s_code": "", "s_country": "", "s_province": "", "s_street": "",
            "s_street2": "", "signup_date": utc_stamp(stamp), "statement_token": None,
            "subdomain": None, "updated": updated or eastern_stamp(stamp), "userid": cid,
            "username": secrets.token_urlsafe(8)[:10], "uuid": str(uuid.uuid4()),
            "vat_name": None, "vat_number": None, "vis_state": 0,
        }
        for name in self.CLIENT_FIELDS:
            if name in body and name not in ("fname", "lname", "email", "organization"):
                client[name] = body[name]
        acct.clients[cid] = client
        return client

    def get_client(self, acct: Account, cid: int) -> dict[str, Any]:
        client = acct.clients.get(cid)
        if client is None:
            raise accounting_error(1012, "Client not found.", field="userid",
                                   object_="client", value=cid)
        return client

    def update_client(self, acct: Account, cid: int, body: dict[str, Any]) -> dict[str, Any]:
        client = self.get_client(acct, cid)
        phase = update_phase(body)
        if phase == "vis_state":
            client["vis_state"] = check_vis_state(body["vis_state"], "client")
        if phase != "data":  # the other fields are discarded silently
            client["updated"] = eastern_stamp()
            return client
        self._check_client_fields(body)
        for name in self.CLIENT_FIELDS:
            if name in body:
                client[name] = body[name] if body[name] is not None else ""
        if "organization" in body and not body["organization"]:
            client["organization"] = (f"{client['fname']} {client['lname']}".strip()
                                      or client["email"])
        client["updated"] = eastern_stamp()
        return client

    # ---- taxes ------------------------------------------------------------------
    def create_tax(self, acct: Account, body: dict[str, Any],
                   updated: str | None = None) -> dict[str, Any]:
        name = str(required(body, "name", "tax")).strip()
        self._check_tax_name(acct, name, None)
        amount = percent(body.get("amount"), "amount", "tax")
        tid = self.new_id()
        tax = {"accounting_systemid": acct.account_id, "amount": str(amount),
               "compound": bool(body.get("compound", False)), "id": tid,
               "name": name, "number": body.get("number"), "taxid": tid,
               "updated": updated or eastern_stamp()}
        acct.taxes[tid] = tax
        return tax

    def _check_tax_name(self, acct: Account, name: str, own: int | None) -> None:
        for tax in acct.taxes.values():
            if tax["id"] != own and tax["name"].strip().lower() == name.lower():
                raise accounting_error(1026, "The tax in the request already exists.",
                                       field="name", object_="tax", value=name)

    def get_tax(self, acct: Account, tid: int) -> dict[str, Any]:
        tax = acct.taxes.get(tid)
        if tax is None:
            raise accounting_error(1012, "Tax not found.", field="taxid", object_="tax",
                                   value=tid)
        return tax

    def update_tax(self, acct: Account, tid: int, body: dict[str, Any]) -> dict[str, Any]:
        tax = self.get_tax(acct, tid)
        if "name" in body:
            name = str(required(body, "name", "tax")).strip()
            self._check_tax_name(acct, name, tid)
            tax["name"] = name
        if "amount" in body:
            tax["amount"] = str(percent(body["amount"], "amount", "tax"))
        if "compound" in body:
            tax["compound"] = bool(body["compound"])
        if "number" in body:
            tax["number"] = body["number"]
        tax["updated"] = eastern_stamp()
        return tax

    def delete_tax(self, acct: Account, tid: int) -> None:
        self.get_tax(acct, tid)
        del acct.taxes[tid]

    def compound_tax_names(self, acct: Account) -> set[str]:
        return {t["name"].strip().lower() for t in acct.taxes.values() if t["compound"]}

    # ---- items ------------------------------------------------------------------
    def _item_fields(self, acct: Account, item: dict[str, Any], body: dict[str, Any]) -> None:
        for name in ("name", "description", "sku"):
            if name in body:
                if body[name] is not None and not isinstance(body[name], str):
                    raise accounting_error(1004, f"Invalid value for {name}.", field=name,
                                           object_="item", value=body[name])
                item[name] = body[name] or ""
        if "qty" in body:
            item["qty"] = str(dec(body["qty"], "qty", "item"))
        if "inventory" in body:
            inv = body["inventory"]
            item["inventory"] = None if inv in (None, "") else str(dec(inv, "inventory", "item"))
        if "unit_cost" in body:
            uc = body["unit_cost"]
            if not isinstance(uc, dict):
                raise accounting_error(1004, "Invalid value for unit_cost.", field="unit_cost",
                                       object_="item", value=uc)
            amount = dec(uc.get("amount"), "unit_cost", "item")
            item["unit_cost"] = {"amount": f"{q2(amount):.2f}",
                                 "code": uc.get("code") or acct.currency_code}
        for name in ("tax1", "tax2"):
            if name in body:
                tid = 0 if body[name] in (None, "", 0) else as_int(body[name], name, "item")
                if tid and tid not in acct.taxes:
                    raise accounting_error(1012, "Tax not found.", field=name, object_="item",
                                           value=tid)
                item[name] = tid

    def create_item(self, acct: Account, body: dict[str, Any],
                    updated: str | None = None) -> dict[str, Any]:
        required(body, "name", "item")
        iid = self.new_id()
        item: dict[str, Any] = {
            "accounting_systemid": acct.account_id, "description": "", "id": iid,
            "inventory": None, "itemid": iid, "name": "", "qty": "0", "sku": "",
            "tax1": 0, "tax2": 0, "unit_cost": {"amount": "0.00", "code": acct.currency_code},
            "updated": "", "vis_state": 0,
        }
        self._item_fields(acct, item, body)
        item["updated"] = updated or eastern_stamp()
        acct.items[iid] = item
        return item

    def get_item(self, acct: Account, iid: int) -> dict[str, Any]:
        item = acct.items.get(iid)
        if item is None:
            raise accounting_error(1012, "Item not found.", field="itemid", object_="item",
                                   value=iid)
        return item

    def update_item(self, acct: Account, iid: int, body: dict[str, Any]) -> dict[str, Any]:
        item = self.get_item(acct, iid)
        phase = update_phase(body)
        if phase == "vis_state":
            item["vis_state"] = check_vis_state(body["vis_state"], "item")
        if phase != "data":  # the other fields are discarded silently
            item["updated"] = eastern_stamp()
            return item
        if "name" in body:
            required(body, "name", "item")
        draft = dict(item)
        self._item_fields(acct, draft, body)
        draft["updated"] = eastern_stamp()
        item.update(draft)
        return item

    # ---- ledger -----------------------------------------------------------------
    def _add_ledger(self, acct: Account, body: dict[str, Any], auto: bool) -> dict[str, Any]:
        ledger_uuid = str(uuid.uuid4())
        parent = body.get("parent_account")
        entry = {
            "uuid": ledger_uuid, "name": body["name"], "number": str(body.get("number") or ""),
            "description": body.get("description") or "", "type": body["type"],
            "sub_type": body["sub_type"], "system_account_name": body["name"],
            "parent_account": parent, "sub_accounts": [], "auto_created": auto,
            "state": "active",
            "updated_at": now_utc().strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }
        if parent and parent in acct.ledger:
            acct.ledger[parent]["sub_accounts"].append(ledger_uuid)
        acct.ledger[ledger_uuid] = entry
        return entry

    def create_ledger(self, acct: Account, body: dict[str, Any],
                      need_parent: bool = True) -> dict[str, Any]:
        missing: list[tuple[str | None, str]] = [
            (name, "This field is required.")
            for name in ("name", "sub_type")
            if not body.get(name)
        ]
        if need_parent and "parent_account" not in body:
            missing.append(("parent_account", "This field is required."))
        if missing:
            raise ledger_error(400, missing)
        parent = body.get("parent_account")
        if parent and parent not in acct.ledger:
            raise ledger_error(400, [("parent_account", "Not found.")])
        if not body.get("type"):
            if not parent:
                raise ledger_error(400, [("type", "This field is required.")])
            body = {**body, "type": acct.ledger[parent]["type"]}
        return self._add_ledger(acct, body, auto=False)

    def get_ledger(self, acct: Account, ledger_uuid: str) -> dict[str, Any]:
        entry = acct.ledger.get(ledger_uuid)
        if entry is None:
            raise ledger_error(404, [(None, "Not found.")])
        return entry

    # ---- invoices ---------------------------------------------------------------
    def _lines(self, acct: Account, currency: str, raw: Any) -> list[dict[str, Any]]:
        if not isinstance(raw, list):
            raise accounting_error(1004, "Invalid value for lines.", field="lines",
                                   object_="invoice", value=raw)
        lines: list[dict[str, Any]] = []
        for pos, line in enumerate(raw):
            if not isinstance(line, dict):
                raise accounting_error(1004, "Invalid value for lines.", field="lines",
                                       object_="line", value=line)
            if line.get("type", 0) not in (0, "0"):
                raise accounting_error(1004, "Only type 0 (normal) lines are supported.",
                                       field="type", object_="line", value=line.get("type"))
            qty = dec(line.get("qty", 1), "qty", "line")
            uc = line.get("unit_cost")
            if not isinstance(uc, dict):
                raise accounting_error(1001, "Field unit_cost is required.",
                                       field="unit_cost", object_="line")
            cost = dec(uc.get("amount"), "unit_cost", "line")
            if uc.get("code") and uc["code"] != currency:
                raise accounting_error(1004, "Line currency must match the invoice.",
                                       field="unit_cost", object_="line", value=uc["code"])
            out: dict[str, Any] = {
                "lineid": pos + 1, "type": 0, "name": str(line.get("name") or ""),
                "description": str(line.get("description") or ""),
                "qty": str(qty), "unit_cost": {"amount": str(cost), "code": currency},
                "compounded_tax": bool(line.get("compounded_tax", False)),
            }
            for n in ("1", "2"):
                tax_amount = percent(line.get(f"taxAmount{n}"), f"taxAmount{n}", "line")
                tax_name = str(line.get(f"taxName{n}") or "")
                if tax_amount and not tax_name:
                    raise accounting_error(1001, f"Field taxName{n} is required.",
                                           field=f"taxName{n}", object_="line")
                out[f"taxName{n}"] = tax_name
                out[f"taxAmount{n}"] = str(tax_amount.normalize()) if tax_amount else "0"
            lines.append(out)
        return lines

    def _client_for_invoice(self, acct: Account, raw: Any) -> dict[str, Any]:
        cid = as_int(raw, "customerid", "invoice")
        client = acct.clients.get(cid)
        if client is None:
            raise accounting_error(1012, "Client not found.", field="customerid",
                                   object_="invoice", value=cid)
        if client["vis_state"] == 1:
            raise accounting_error(1011, "The resource referred to in the request is deleted.",
                                   field="customerid", object_="invoice", value=cid)
        return client

    def create_invoice(self, acct: Account, body: dict[str, Any]) -> dict[str, Any]:
        client = self._client_for_invoice(acct, required(body, "customerid", "invoice"))
        create_day = parse_day(required(body, "create_date", "invoice"), "create_date",
                               "invoice")
        currency = body.get("currency_code") or client["currency_code"] or acct.currency_code
        if not re.match(r"^[A-Z]{3}$", str(currency)):
            raise accounting_error(1004, "Invalid currency code.", field="currency_code",
                                   object_="invoice", value=currency)
        offset = as_int(body.get("due_offset_days", 0), "due_offset_days", "invoice")
        discount = percent(body.get("discount_value"), "discount_value", "invoice")
        lines = self._lines(acct, currency, body.get("lines", []))
        acct.invoice_seq += 1
        number = body.get("invoice_number") or f"{acct.invoice_seq:07d}"
        iid = self.new_id()
        stamp = now_utc()
        invoice: dict[str, Any] = {
            "id": iid, "invoiceid": iid, "accountid": acct.account_id,
            "accounting_systemid": acct.account_id, "customerid": client["id"],
            "create_date": create_day.isoformat(), "created_at": eastern_stamp(stamp),
            "currency_code": currency, "current_organization": client["organization"],
            "date_paid": None, "description": "", "discount_description": None,
            "discount_value": str(discount), "dispute_status": None,
            "due_offset_days": offset, "estimateid": 0, "fname": client["fname"],
            "lname": client["lname"], "organization": client["organization"],
            "invoice_number": str(number), "language": "en",
            "notes": str(body.get("notes") or ""), "terms": str(body.get("terms") or ""),
            "po_number": body.get("po_number"), "ownerid": 1, "parent": 0, "sentid": 1,
            "status": 1, "lines": lines, "vis_state": 0, "updated": eastern_stamp(stamp),
        }
        acct.invoices[iid] = invoice
        return invoice

    def get_invoice(self, acct: Account, iid: int) -> dict[str, Any]:
        invoice = acct.invoices.get(iid)
        if invoice is None:
            raise accounting_error(1012, "Invoice not found.", field="invoiceid",
                                   object_="invoice", value=iid)
        return invoice

    def update_invoice(self, acct: Account, iid: int, body: dict[str, Any]) -> dict[str, Any]:
        invoice = self.get_invoice(acct, iid)
        phase = update_phase(body)
        if phase == "vis_state":
            vis_state = check_vis_state(body["vis_state"], "invoice")
            if vis_state == 1 and invoice["vis_state"] != 1:
                self._refuse_delete_with_payments(acct, invoice)
            invoice["vis_state"] = vis_state
        elif phase == "action":
            if (body.get("action_mark_as_sent") or body.get("action_email")) \
                    and invoice["status"] == 1:
                invoice["status"] = 2
        elif phase == "data":
            self._update_invoice_fields(acct, invoice, body)
        invoice["updated"] = eastern_stamp()
        self._settle(acct, invoice)
        return invoice

    def _refuse_delete_with_payments(self, acct: Account, invoice: dict[str, Any]) -> None:
        """FreshBooks Postman collection, "Delete Invoice": an invoice with payments is
        deleted only after its payments are deleted or converted to credit. The error
        FreshBooks answers is not published [assumption: 422, errno 1004, field vis_state]."""
        live = [p for p in acct.payments.values()
                if p["invoiceid"] == invoice["id"] and p["vis_state"] == 0]
        if live:
            raise accounting_error(
                1004, "An invoice with payments cannot be deleted; delete its payments or "
                "convert them to credit first.", field="vis_state", object_="invoice",
                value=1)

    def _update_invoice_fields(self, acct: Account, invoice: dict[str, Any],
                               body: dict[str, Any]) -> None:
        draft = dict(invoice)
        if "customerid" in body:
            client = self._client_for_invoice(acct, body["customerid"])
            draft.update(customerid=client["id"], fname=client["fname"],
                         lname=client["lname"], organization=client["organization"],
                         current_organization=client["organization"])
        if "create_date" in body:
            draft["create_date"] = parse_day(body["create_date"], "create_date",
                                             "invoice").isoformat()
        if "due_offset_days" in body:
            draft["due_offset_days"] = as_int(body["due_offset_days"], "due_offset_days",
                                              "invoice")
        if "discount_value" in body:
            draft["discount_value"] = str(percent(body["discount_value"], "discount_value",
                                                  "invoice"))
        if "invoice_number" in body:
            draft["invoice_number"] = str(required(body, "invoice_number", "invoice"))
        for name in ("notes", "terms", "po_number"):
            if name in body:
                draft[name] = body[name]
        if "lines" in body:
            draft["lines"] = self._lines(acct, draft["currency_code"], body["lines"])
        if body.get("status") == 2:
            if draft["status"] == 1:
                draft["status"] = 2
        elif "status" in body and body["status"] != draft["status"]:
            raise accounting_error(1004, "Invalid value for status.", field="status",
                                   object_="invoice", value=body["status"])
        invoice.update(draft)

    def delete_invoice(self, acct: Account, iid: int) -> dict[str, Any]:
        return self.update_invoice(acct, iid, {"vis_state": 1})

    def _paid(self, acct: Account, iid: int) -> Decimal:
        return sum(
            (Decimal(p["_applied"]) for p in acct.payments.values()
             if p["invoiceid"] == iid and p["vis_state"] == 0),
            Decimal(0),
        )

    def _settle(self, acct: Account, invoice: dict[str, Any]) -> None:
        """Recompute status from payments (paid 4, partial 8, else sent/draft)."""
        totals = self.totals(acct, invoice)
        paid = self._paid(acct, invoice["id"])
        if paid > 0 and paid >= totals["total"]:
            if invoice["status"] != 4:
                invoice["status"] = 4
                invoice["date_paid"] = now_utc().date().isoformat()
        elif paid > 0:
            invoice["status"] = 8
            invoice["date_paid"] = None
        elif invoice["status"] in (4, 8):
            invoice["status"] = 2
            invoice["date_paid"] = None

    def totals(self, acct: Account, invoice: dict[str, Any]) -> dict[str, Any]:
        return invoice_totals(invoice["lines"], Decimal(invoice["discount_value"]),
                              self.compound_tax_names(acct))

    def render_invoice(self, acct: Account, invoice: dict[str, Any],
                       with_lines: bool) -> dict[str, Any]:
        totals = self.totals(acct, invoice)
        paid = min(self._paid(acct, invoice["id"]), totals["total"])
        outstanding = totals["total"] - paid
        code = invoice["currency_code"]
        status = invoice["status"]
        out = {k: v for k, v in invoice.items() if k != "lines"}
        out.update(
            amount=money(totals["total"], code),
            discount_total=money(totals["discount_total"], code),
            outstanding=money(outstanding, code),
            paid=money(paid, code),
            due_date=(date.fromisoformat(invoice["create_date"])
                      + timedelta(days=invoice["due_offset_days"])).isoformat(),
            v3_status=STATUS_NAMES[status],
            display_status=STATUS_NAMES[status] if status != 8 else "partial",
            payment_status="paid" if status == 4 else "partial" if status == 8 else "unpaid",
        )
        if with_lines:
            out["lines"] = [
                {**line, "invoiceid": invoice["id"],
                 "amount": money(amount, code), "updated": invoice["updated"]}
                for line, amount in zip(invoice["lines"], totals["line_amounts"], strict=True)
            ]
        return out

    # ---- payments ---------------------------------------------------------------
    def create_payment(self, acct: Account, body: dict[str, Any]) -> dict[str, Any]:
        iid = as_int(required(body, "invoiceid", "payment"), "invoiceid", "payment")
        invoice = acct.invoices.get(iid)
        if invoice is None:
            raise accounting_error(1012, "Invoice not found.", field="invoiceid",
                                   object_="payment", value=iid)
        if invoice["vis_state"] == 1:
            raise accounting_error(1011, "The resource referred to in the request is deleted.",
                                   field="invoiceid", object_="payment", value=iid)
        raw_amount = required(body, "amount", "payment")
        if not isinstance(raw_amount, dict):
            raise accounting_error(1004, "Invalid value for amount.", field="amount",
                                   object_="payment", value=raw_amount)
        amount = dec(raw_amount.get("amount"), "amount", "payment")
        if amount <= 0:
            raise accounting_error(1025, "A value in the request that was negative should not "
                                   "be.", field="amount", object_="payment", value=amount)
        amount = q2(amount)
        code = invoice["currency_code"]
        if raw_amount.get("code") and raw_amount["code"] != code:
            raise accounting_error(1004, "Payment currency must match the invoice.",
                                   field="amount", object_="payment", value=raw_amount["code"])
        pay_day = parse_day(required(body, "date", "payment"), "date", "payment")
        ptype = body.get("type", "Check")
        if ptype not in PAYMENT_TYPES:
            raise accounting_error(1004, "Invalid value for type.", field="type",
                                   object_="payment", value=ptype)
        totals = self.totals(acct, invoice)
        outstanding = max(totals["total"] - self._paid(acct, iid), Decimal(0))
        applied = min(amount, outstanding)
        pid = self.new_id()
        overpaymentid = None
        if amount > outstanding:
            overpaymentid = self.new_id()
            acct.credits[overpaymentid] = {
                "creditid": overpaymentid, "id": overpaymentid,
                "clientid": invoice["customerid"], "paymentid": pid, "invoiceid": iid,
                "amount": money(amount - outstanding, code), "date": pay_day.isoformat(),
                "type": "overpayment",
            }
        payment: dict[str, Any] = {
            "id": pid, "logid": pid, "accounting_systemid": acct.account_id,
            "invoiceid": iid, "clientid": invoice["customerid"],
            "amount": money(amount, code), "date": pay_day.isoformat(), "type": ptype,
            "note": str(body.get("note") or ""), "overpaymentid": overpaymentid,
            "creditid": None, "bulk_paymentid": None, "from_credit": False,
            "gateway": None, "orderid": None, "transactionid": None,
            "send_client_notification": bool(body.get("send_client_notification", False)),
            "updated": eastern_stamp(), "vis_state": 0, "_applied": str(applied),
        }
        acct.payments[pid] = payment
        self._settle(acct, invoice)
        return payment

    def get_payment(self, acct: Account, pid: int) -> dict[str, Any]:
        payment = acct.payments.get(pid)
        if payment is None:
            raise accounting_error(1012, "Payment not found.", field="logid",
                                   object_="payment", value=pid)
        return payment

    def update_payment(self, acct: Account, pid: int, body: dict[str, Any]) -> dict[str, Any]:
        payment = self.get_payment(acct, pid)
        phase = update_phase(body)
        if phase == "vis_state":
            payment["vis_state"] = check_vis_state(body["vis_state"], "payment", (0, 1))
            if payment["overpaymentid"] and payment["vis_state"] == 1:
                acct.credits.pop(payment["overpaymentid"], None)
        if phase != "data":  # the other fields are discarded silently
            payment["updated"] = eastern_stamp()
            self._settle(acct, acct.invoices[payment["invoiceid"]])
            return payment
        if "note" in body:
            payment["note"] = str(body["note"] or "")
        if "type" in body:
            if body["type"] not in PAYMENT_TYPES:
                raise accounting_error(1004, "Invalid value for type.", field="type",
                                       object_="payment", value=body["type"])
            payment["type"] = body["type"]
        if "date" in body:
            payment["date"] = parse_day(body["date"], "date", "payment").isoformat()
        payment["updated"] = eastern_stamp()
        self._settle(acct, acct.invoices[payment["invoiceid"]])
        return payment

    @staticmethod
    def render_payment(payment: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in payment.items() if not k.startswith("_")}

    # ---- dump -------------------------------------------------------------------
    def dump(self, acct: Account) -> dict[str, Any]:
        return {
            "account": {"account_id": acct.account_id, "business_id": acct.business_id,
                        "region": acct.region,
                        "business_uuid": acct.business_uuid, "name": acct.name,
                        "identity_id": acct.identity_id, "currency_code": acct.currency_code},
            "clients": list(acct.clients.values()),
            "items": list(acct.items.values()),
            "taxes": list(acct.taxes.values()),
            "invoices": [self.render_invoice(acct, i, True) for i in acct.invoices.values()],
            "payments": [self.render_payment(p) for p in acct.payments.values()],
            "credits": list(acct.credits.values()),
            "ledger_accounts": list(acct.ledger.values()),
        }
