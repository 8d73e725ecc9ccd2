"""A small evaluator for Xero's `where` query parameter.

Supported grammar (enough for the adapter and for tests):

    expr    := term (("OR" | "||") term)*
    term    := factor (("AND" | "&&") factor)*
    factor  := "(" expr ")" | "NOT" factor | "!" factor | cmp
    cmp     := field (("==" | "!=" | ">" | ">=" | "<" | "<=") value
               | "." ("Contains" | "StartsWith" | "EndsWith") "(" string ")")?
    field   := Name ("." Name)*                     e.g. Contact.ContactID
    value   := "string" | number | true | false | null | Guid("...")

String literals are double quoted with `\\"` and `\\\\` escapes. String comparisons
are case-insensitive (Xero's store collates case-insensitively). A bare boolean field
(`IsCustomer`) means `IsCustomer == true`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = ["WhereError", "compile_where"]

Predicate = Callable[[dict[str, Any]], bool]

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<str>"(?:[^"\\]|\\.)*")
      | (?P<num>-?\d+(?:\.\d+)?)
      | (?P<op>==|!=|>=|<=|&&|\|\||[<>()!.,])
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)


class WhereError(ValueError):
    pass


def _tokenize(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise WhereError(f"Unexpected character at position {pos} in where clause")
        kind = m.lastgroup or ""
        raw = m.group(kind)
        if kind == "str":
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        out.append((kind, raw))
        pos = m.end()
    return out


def _lookup(record: dict[str, Any], path: list[str]) -> Any:
    cur: Any = record
    for part in path:
        if not isinstance(cur, dict):
            return None
        match = next((k for k in cur if k.lower() == part.lower()), None)
        if match is None:
            return None
        cur = cur[match]
    return cur


def _norm(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float | Decimal):
        return Decimal(str(value))
    if isinstance(value, str):
        try:
            if re.fullmatch(r"-?\d+(\.\d+)?", value):
                return value.casefold()
        except InvalidOperation:  # pragma: no cover
            pass
        return value.casefold()
    return value


def _compare(op: str, left: Any, right: Any) -> bool:
    a, b = _norm(left), _norm(right)
    if isinstance(b, Decimal) and isinstance(a, str):
        try:
            a = Decimal(a)
        except InvalidOperation:
            return False
    if op == "==":
        return bool(a == b)
    if op == "!=":
        return bool(a != b)
    if a is None or b is None:
        return False
    try:
        if op == ">":
            return bool(a > b)
        if op == ">=":
            return bool(a >= b)
        if op == "<":
            return bool(a < b)
        return bool(a <= b)
    except TypeError:
        return False


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.toks = tokens
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise WhereError("Unexpected end of where clause")
        self.i += 1
        return tok

    def expect(self, raw: str) -> None:
        _kind, val = self.take()
        if val != raw:
            raise WhereError(f"Expected '{raw}' but found '{val}' in where clause")

    def is_word(self, *words: str) -> bool:
        tok = self.peek()
        return tok is not None and tok[1].upper() in words and tok[0] in ("name", "op")

    def expr(self) -> Predicate:
        left = self.term()
        while self.is_word("OR", "||"):
            self.take()
            right = self.term()
            left = (lambda a, b: lambda r: a(r) or b(r))(left, right)
        return left

    def term(self) -> Predicate:
        left = self.factor()
        while self.is_word("AND", "&&"):
            self.take()
            right = self.factor()
            left = (lambda a, b: lambda r: a(r) and b(r))(left, right)
        return left

    def factor(self) -> Predicate:
        tok = self.peek()
        if tok == ("op", "("):
            self.take()
            inner = self.expr()
            self.expect(")")
            return inner
        negate = tok == ("op", "!") or (tok is not None and tok[0] == "name"
                                         and tok[1].upper() == "NOT")
        if negate:
            self.take()
            inner = self.factor()
            return lambda r: not inner(r)
        return self.cmp()

    def value(self) -> Any:
        kind, raw = self.take()
        if kind == "str":
            return raw
        if kind == "num":
            return Decimal(raw)
        if kind == "name":
            low = raw.lower()
            if low == "true":
                return True
            if low == "false":
                return False
            if low == "null":
                return None
            if low == "guid":
                self.expect("(")
                k, v = self.take()
                if k != "str":
                    raise WhereError("Guid() takes a string")
                self.expect(")")
                return v
        raise WhereError(f"Unsupported value '{raw}' in where clause")

    def cmp(self) -> Predicate:
        kind, raw = self.take()
        if kind != "name":
            raise WhereError(f"Expected a field name but found '{raw}' in where clause")
        path = [raw]
        while self.peek() == ("op", "."):
            self.take()
            k, name = self.take()
            if k != "name":
                raise WhereError("Expected a name after '.' in where clause")
            if name in ("Contains", "StartsWith", "EndsWith", "ToLower", "ToUpper"):
                if name in ("ToLower", "ToUpper"):
                    self.expect("(")
                    self.expect(")")
                    continue
                self.expect("(")
                arg = self.value()
                self.expect(")")
                needle = str(arg).casefold()
                fn = {"Contains": str.__contains__, "StartsWith": str.startswith,
                      "EndsWith": str.endswith}[name]
                p = list(path)
                return lambda r: isinstance(_lookup(r, p), str) and bool(
                    fn(str(_lookup(r, p)).casefold(), needle))
            path.append(name)
        tok = self.peek()
        if tok is not None and tok[0] == "op" and tok[1] in ("==", "!=", ">", ">=", "<", "<="):
            op = self.take()[1]
            rhs = self.value()
            return lambda r: _compare(op, _lookup(r, path), rhs)
        return lambda r: _lookup(r, path) is True


def compile_where(text: str) -> Predicate:
    parser = _Parser(_tokenize(text))
    pred = parser.expr()
    if parser.peek() is not None:
        raise WhereError(f"Unexpected '{parser.peek()[1]}' in where clause")  # type: ignore[index]
    return pred
