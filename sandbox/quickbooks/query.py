"""The QuickBooks Online query language, small but real: a tokenizer, a parser and an evaluator.

Grammar accepted (keywords, entity names and field names are case-insensitive)::

    SELECT ( * | COUNT(*) | field [, field]* ) FROM <Entity>
        [WHERE cond [AND cond]*]
        [ORDERBY field [ASC|DESC] [, field [ASC|DESC]]*]
        [STARTPOSITION n] [MAXRESULTS n]          (either order)

    cond := field (= | < | > | <= | >=) literal
          | field LIKE 'pattern'                  (% is the only wildcard)
          | field IN (literal [, literal]*)
    literal := 'string' | number | true | false

String literals use single quotes; inside them a backslash escapes the next character, so
``\\'`` is a quote and ``\\\\`` a backslash (this is how QuickBooks expects ``O'Brien`` to be
sent: ``'O\\'Brien'``). Any non-ASCII text is allowed. There is no OR, no parentheses
around conditions and no ``ORDER BY`` (two words) -- as in QuickBooks those are parse errors.

Evaluation choices (documented, since QuickBooks does not publish them):
- String comparisons (=, IN, LIKE, ordering) are case-insensitive.
- A reference field (``CustomerRef``) compares by its ``value``; ``PrimaryEmailAddr`` by
  ``Address``; ``PrimaryPhone`` by ``FreeFormNumber``.
- Two values that both look numeric compare as numbers (so ``Id > '9'`` is numeric); two that
  both parse as ISO dates/date-times compare as instants (naive ones in the company's zone).
- A row without the field never matches.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = [
    "COMPANY_TZ",
    "ENTITIES",
    "NAME_LIST",
    "Condition",
    "Query",
    "QueryError",
    "evaluate",
    "parse_query",
    "quote",
]

# The simulated company's clock: a fixed US Pacific (daylight) offset.
COMPANY_TZ = timezone(timedelta(hours=-7))

_META = {"metadata.createtime", "metadata.lastupdatedtime"}

# Queryable properties per entity (lower-cased). Anything else is a QueryValidationError,
# as QuickBooks answers for properties that are not queryable ("not queryable":
# quickbooks-ruby #258 for Payment.UnappliedAmt, #24 for Account.AcctNum). The lists are the
# properties Intuit's entity reference pages mark filterable/sortable, as reproduced by
# Nytely-Official/quickbooks-api ``src/types/enums/filters.ts`` (Customer, Invoice) and by
# the Mescius/CData QuickBooks Online connector tables (Payment: Id, MetaData, TxnDate,
# CustomerRef); where no list was found the set is kept small and is an assumption
# (README "assumptions"). Payment.PaymentRefNum is deliberately NOT queryable here: no
# public source confirms it, so the adapter must not rely on it.
NAME_LIST = ("Customer", "Vendor", "Employee")  # share one DisplayName namespace (6240)
ENTITIES: dict[str, set[str]] = {
    "Customer": {
        "id", "displayname", "givenname", "middlename", "familyname", "companyname",
        "fullyqualifiedname", "primaryemailaddr", "active", "balance", "printoncheckname",
        *_META,
    },
    "Vendor": {
        "id", "displayname", "givenname", "middlename", "familyname", "companyname",
        "fullyqualifiedname", "primaryemailaddr", "active", "balance", "printoncheckname",
        *_META,
    },
    "Employee": {
        "id", "displayname", "givenname", "middlename", "familyname", "active",
        "printoncheckname", "employeenumber", *_META,
    },
    "Item": {
        "id", "synctoken", "name", "sku", "type", "active", "unitprice", "incomeaccountref",
        "fullyqualifiedname", "taxable", "description", "qtyonhand", *_META,
    },
    "Account": {
        "id", "name", "accounttype", "accountsubtype", "classification", "active",
        "currentbalance", "fullyqualifiedname", "currencyref", *_META,
    },
    "Invoice": {
        "id", "customerref", "docnumber", "projectref", "txndate", "salestermref", "duedate",
        "balance", "totalamt", *_META,
    },
    "Payment": {
        "id", "txndate", "customerref", "totalamt", *_META,
    },
    # Finance.xsd "Filterable": TaxCode Name (ALL), Active; TaxRate Name, Active (QBW; for
    # QBO an ASSUMPTION) -- and Id, as for every entity.
    "TaxCode": {"id", "name", "active", *_META},
    "TaxRate": {"id", "name", "active", *_META},
}

MAX_RESULTS_CAP = 1000
DEFAULT_MAX_RESULTS = 100


class QueryError(Exception):
    """``code`` 4000 for parse errors, 4001 for validation (unknown entity/property)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Literal:
    kind: str  # "str" | "num" | "bool"
    value: str | Decimal | bool


@dataclass(frozen=True, slots=True)
class Condition:
    field: str
    op: str  # = < > <= >= LIKE IN
    values: tuple[Literal, ...]


@dataclass(slots=True)
class Query:
    entity: str
    count: bool = False
    fields: list[str] | None = None  # None = *
    where: list[Condition] = field(default_factory=list)
    order: list[tuple[str, bool]] = field(default_factory=list)  # (field, descending)
    start_position: int = 1
    max_results: int = DEFAULT_MAX_RESULTS


def quote(text: str) -> str:
    """Quote a string literal the way QuickBooks expects it."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


# --------------------------------------------------------------------------- tokenizer

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<str>')
  | (?P<num>-?\d+(?:\.\d+)?)
  | (?P<ident>[^\W\d][\w.]*)
  | (?P<op><=|>=|=|<|>)
  | (?P<punct>[(),*])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # str num ident op punct
    text: str
    pos: int


def _tokenize(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i = 0
    n = len(text)
    while i < n:
        m = _TOKEN.match(text, i)
        if m is None:
            raise QueryError("4000", f"Unexpected character {text[i]!r} at position {i}")
        kind = m.lastgroup or ""
        if kind == "ws":
            i = m.end()
            continue
        if kind == "str":
            j = i + 1
            buf: list[str] = []
            while True:
                if j >= n:
                    raise QueryError("4000", f"Unterminated string literal at position {i}")
                ch = text[j]
                if ch == "\\":
                    if j + 1 >= n:
                        raise QueryError("4000", f"Unterminated string literal at position {i}")
                    buf.append(text[j + 1])
                    j += 2
                    continue
                if ch == "'":
                    j += 1
                    break
                buf.append(ch)
                j += 1
            toks.append(_Tok("str", "".join(buf), i))
            i = j
            continue
        toks.append(_Tok(kind, m.group(), i))
        i = m.end()
    return toks


# --------------------------------------------------------------------------- parser


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokenize(text)
        self.i = 0

    def peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def next(self, what: str) -> _Tok:
        tok = self.peek()
        if tok is None:
            raise QueryError("4000", f"Unexpected end of query, expected {what}")
        self.i += 1
        return tok

    def is_kw(self, kw: str) -> bool:
        tok = self.peek()
        return tok is not None and tok.kind == "ident" and tok.text.upper() == kw

    def expect_kw(self, kw: str) -> None:
        tok = self.next(kw)
        if tok.kind != "ident" or tok.text.upper() != kw:
            raise QueryError("4000", f"Expected {kw} at position {tok.pos}, found {tok.text!r}")

    def expect_punct(self, p: str) -> None:
        tok = self.next(repr(p))
        if tok.kind != "punct" or tok.text != p:
            raise QueryError("4000", f"Expected {p!r} at position {tok.pos}, found {tok.text!r}")

    def ident(self, what: str) -> str:
        tok = self.next(what)
        if tok.kind != "ident" or tok.text.upper() in _RESERVED:
            raise QueryError("4000", f"Expected {what} at position {tok.pos}, found {tok.text!r}")
        return tok.text

    def integer(self, what: str) -> int:
        tok = self.next(what)
        if tok.kind != "num" or not tok.text.isdigit():
            raise QueryError("4000", f"Expected a whole number after {what}, found {tok.text!r}")
        return int(tok.text)

    def literal(self) -> Literal:
        tok = self.next("a value")
        if tok.kind == "str":
            return Literal("str", tok.text)
        if tok.kind == "num":
            return Literal("num", Decimal(tok.text))
        if tok.kind == "ident" and tok.text.lower() in ("true", "false"):
            return Literal("bool", tok.text.lower() == "true")
        raise QueryError("4000", f"Expected a value at position {tok.pos}, found {tok.text!r}")

    def parse(self) -> Query:
        self.expect_kw("SELECT")
        count = False
        fields: list[str] | None = None
        tok = self.peek()
        if tok is not None and tok.kind == "punct" and tok.text == "*":
            self.i += 1
        elif self.is_kw("COUNT"):
            self.i += 1
            self.expect_punct("(")
            self.expect_punct("*")
            self.expect_punct(")")
            count = True
        else:
            fields = [self.ident("a property name")]
            while self._punct(","):
                fields.append(self.ident("a property name"))
        self.expect_kw("FROM")
        q = Query(entity=self.ident("an entity name"), count=count, fields=fields)
        if self.is_kw("WHERE"):
            self.i += 1
            q.where.append(self.condition())
            while self.is_kw("AND"):
                self.i += 1
                q.where.append(self.condition())
        if self.is_kw("ORDERBY"):
            self.i += 1
            q.order.append(self.order_item())
            while self._punct(","):
                q.order.append(self.order_item())
        seen: set[str] = set()
        while self.is_kw("STARTPOSITION") or self.is_kw("MAXRESULTS"):
            kw = self.next("keyword").text.upper()
            if kw in seen:
                raise QueryError("4000", f"{kw} given twice")
            seen.add(kw)
            n = self.integer(kw)
            if kw == "STARTPOSITION":
                if n < 1:
                    raise QueryError("4000", "STARTPOSITION must be 1 or more")
                q.start_position = n
            else:
                q.max_results = n
        tok = self.peek()
        if tok is not None:
            raise QueryError("4000", f"Unexpected {tok.text!r} at position {tok.pos}")
        return q

    def _punct(self, p: str) -> bool:
        tok = self.peek()
        if tok is not None and tok.kind == "punct" and tok.text == p:
            self.i += 1
            return True
        return False

    def order_item(self) -> tuple[str, bool]:
        name = self.ident("a property name")
        desc = False
        if self.is_kw("ASC") or self.is_kw("DESC"):
            desc = self.next("ASC|DESC").text.upper() == "DESC"
        return name, desc

    def condition(self) -> Condition:
        name = self.ident("a property name")
        tok = self.next("an operator")
        if tok.kind == "op":
            return Condition(name, tok.text, (self.literal(),))
        if tok.kind == "ident" and tok.text.upper() == "LIKE":
            lit = self.literal()
            if lit.kind != "str":
                raise QueryError("4000", "LIKE needs a quoted pattern")
            return Condition(name, "LIKE", (lit,))
        if tok.kind == "ident" and tok.text.upper() == "IN":
            self.expect_punct("(")
            values = [self.literal()]
            while self._punct(","):
                values.append(self.literal())
            self.expect_punct(")")
            return Condition(name, "IN", tuple(values))
        raise QueryError("4000", f"Expected an operator at position {tok.pos}, found {tok.text!r}")


_RESERVED = {
    "SELECT", "FROM", "WHERE", "AND", "OR", "ORDERBY", "ASC", "DESC", "STARTPOSITION",
    "MAXRESULTS", "LIKE", "IN", "COUNT",
}


def parse_query(text: str) -> Query:
    """Parse and validate a query; raises QueryError."""
    q = _Parser(text).parse()
    canonical = {name.lower(): name for name in ENTITIES}
    entity = canonical.get(q.entity.lower())
    if entity is None:
        raise QueryError("4001", f"QueryValidationError: Invalid entity name {q.entity!r}")
    q.entity = entity
    allowed = ENTITIES[entity]
    names = [c.field for c in q.where] + [f for f, _ in q.order] + (q.fields or [])
    for name in names:
        if name.lower() not in allowed:
            raise QueryError(
                "4001", f"QueryValidationError: property '{name}' is not queryable"
            )
    if q.max_results > MAX_RESULTS_CAP:
        # Not a silent cap: QuickBooks refuses the query (QuickBooks-V3-DotNET-SDK #163).
        raise QueryError(
            "4001",
            f"QueryValidationError: value {q.max_results} for MAXRESULTS exceeds the maximum "
            f"allowed value of {MAX_RESULTS_CAP}",
        )
    return q


# --------------------------------------------------------------------------- evaluator

_MISSING = object()


def _lookup(row: dict[str, Any], path: str) -> Any:
    cur: Any = row
    for part in path.split("."):
        if not isinstance(cur, dict):
            return _MISSING
        low = part.lower()
        for key, value in cur.items():
            if key.lower() == low:
                cur = value
                break
        else:
            return _MISSING
    if isinstance(cur, dict):
        for key in ("value", "Address", "FreeFormNumber"):
            if key in cur:
                return cur[key]
        return _MISSING
    return cur


def _as_number(v: Any) -> Decimal | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float | Decimal):
        return Decimal(str(v))
    if isinstance(v, str) and re.fullmatch(r"\s*-?\d+(\.\d+)?\s*", v):
        try:
            return Decimal(v.strip())
        except InvalidOperation:  # pragma: no cover - regex guards this
            return None
    return None


def _as_instant(v: Any) -> datetime | None:
    if not isinstance(v, str) or not re.match(r"\d{4}-\d{2}-\d{2}", v):
        return None
    try:
        if len(v) == 10:
            d = date.fromisoformat(v)
            return datetime(d.year, d.month, d.day, tzinfo=COMPANY_TZ)
        dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=COMPANY_TZ)


def _as_bool(v: Any) -> bool | None:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    return None


def _compare(a: Any, b: Any) -> int:
    """Three-way comparison with the coercions documented in the module docstring."""
    ba, bb = _as_bool(a), _as_bool(b)
    if (isinstance(a, bool) or isinstance(b, bool)) and ba is not None and bb is not None:
        return (ba > bb) - (ba < bb)
    na, nb = _as_number(a), _as_number(b)
    if na is not None and nb is not None:
        return (na > nb) - (na < nb)
    da, db = _as_instant(a), _as_instant(b)
    if da is not None and db is not None:
        return (da > db) - (da < db)
    sa, sb = str(a).casefold(), str(b).casefold()
    return (sa > sb) - (sa < sb)


def _like(value: Any, pattern: str) -> bool:
    regex = ".*".join(re.escape(part) for part in pattern.casefold().split("%"))
    return re.fullmatch(regex, str(value).casefold(), re.DOTALL) is not None


def _matches(row: dict[str, Any], cond: Condition) -> bool:
    value = _lookup(row, cond.field)
    if value is _MISSING or value is None:
        return False
    if cond.op == "LIKE":
        return _like(value, str(cond.values[0].value))
    if cond.op == "IN":
        return any(_compare(value, lit.value) == 0 for lit in cond.values)
    c = _compare(value, cond.values[0].value)
    return {
        "=": c == 0, "<": c < 0, ">": c > 0, "<=": c <= 0, ">=": c >= 0,
    }[cond.op]


def _sort_key(order: list[tuple[str, bool]]) -> Any:
    def cmp(a: dict[str, Any], b: dict[str, Any]) -> int:
        for name, desc in [*order, ("Id", False)]:
            va, vb = _lookup(a, name), _lookup(b, name)
            if va is _MISSING or vb is _MISSING:
                c = (va is _MISSING) - (vb is _MISSING)  # missing values last
            else:
                c = _compare(va, vb)
                if desc:
                    c = -c
            if c:
                return c
        return 0

    return functools.cmp_to_key(cmp)


def evaluate(q: Query, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Run a parsed query over the entity's rows; returns the ``QueryResponse`` object.

    Like QuickBooks, name-list entities (Customer, Vendor, Employee, Item, Account) only
    return active rows
    unless the WHERE clause mentions ``Active`` (e.g. ``Active IN (true, false)``).
    """
    selected = rows
    if q.entity in (*NAME_LIST, "Item", "Account") and not any(
        c.field.lower() == "active" for c in q.where
    ):
        selected = [r for r in selected if r.get("Active", True) is not False]
    selected = [r for r in selected if all(_matches(r, c) for c in q.where)]
    if q.count:
        return {"totalCount": len(selected)}
    selected = sorted(selected, key=_sort_key(q.order))
    page = selected[q.start_position - 1 : q.start_position - 1 + q.max_results]
    if not page:
        return {}
    if q.fields is not None:
        wanted = [f.lower() for f in q.fields]
        page = [
            {k: v for k, v in r.items() if k.lower() in wanted or k in ("Id", "domain")}
            | {"sparse": True}
            for r in page
        ]
    return {q.entity: page, "startPosition": q.start_position, "maxResults": len(page)}
