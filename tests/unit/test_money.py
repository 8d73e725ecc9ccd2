"""Money rules: Decimal only, half-up rounding to each currency's ISO 4217 minor unit."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.scenario import build_invoice
from schemas.money import (
    MINOR_UNITS,
    UnknownCurrency,
    is_known_currency,
    minor_unit,
    quantize_money,
)


@pytest.mark.parametrize(("code", "places"), [("USD", 2), ("JPY", 0), ("KWD", 3), ("EUR", 2),
                                              ("KRW", 0), ("BHD", 3)])
def test_minor_units(code: str, places: int) -> None:
    assert minor_unit(code) == places
    assert is_known_currency(code)


@pytest.mark.parametrize("code", ["XXX", "usd", "", "BTC", "US"])
def test_unknown_currency_is_refused_not_guessed(code: str) -> None:
    assert not is_known_currency(code)
    with pytest.raises(UnknownCurrency):
        minor_unit(code)
    with pytest.raises(UnknownCurrency):
        quantize_money(Decimal("1"), code)


@pytest.mark.parametrize(("amount", "code", "expected"), [
    ("2.005", "USD", "2.01"), ("2.004999", "USD", "2.00"), ("-2.005", "USD", "-2.01"),
    ("0.5", "JPY", "1"), ("1.5", "JPY", "2"), ("2.5", "JPY", "3"), ("1234.4999", "JPY", "1234"),
    ("1.0005", "KWD", "1.001"), ("1.0004", "KWD", "1.000"), ("10", "USD", "10.00"),
])
def test_half_up(amount: str, code: str, expected: str) -> None:
    result = quantize_money(Decimal(amount), code)
    assert result == Decimal(expected)
    assert str(result) == expected  # the exponent is the minor unit


def test_all_codes_are_iso_shaped() -> None:
    for code, places in MINOR_UNITS.items():
        assert len(code) == 3 and code.isupper() and places in (0, 2, 3)


@settings(max_examples=200, deadline=None)
@given(st.decimals(min_value=Decimal("-1e11"), max_value=Decimal("1e11"), places=6),
       st.sampled_from(sorted(MINOR_UNITS)))
def test_quantize_properties(amount: Decimal, code: str) -> None:
    q = quantize_money(amount, code)
    step = Decimal(1).scaleb(-minor_unit(code))
    assert q.as_tuple().exponent == -minor_unit(code)
    assert abs(q - amount) <= step / 2
    assert quantize_money(q, code) == q  # idempotent


_line = st.tuples(
    st.sampled_from(["i-1", "i-2", "i-3"]),
    st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("500"), places=4).map(str),
    st.decimals(min_value=Decimal("0"), max_value=Decimal("5000"), places=4).map(str),
    st.sampled_from(["0", "5", "10", "12.5", "33.3333", "100"]),
    st.sampled_from(["0", "5", "8.25", "20", "0.001"]),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_line, min_size=1, max_size=12), st.sampled_from(["USD", "JPY", "KWD"]),
       st.sampled_from(["exclusive", "inclusive", "none"]))
def test_build_invoice_totals_are_consistent(lines: list[tuple[str, str, str, str, str]],
                                             currency: str, mode: str) -> None:
    inv = build_invoice("inv", "c", "1", currency, mode, lines)  # type: ignore[arg-type]
    for value in (inv.subtotal, inv.tax_total, inv.total, *(li.amount for li in inv.lines)):
        assert value == quantize_money(value, currency)
        assert value >= 0
    assert inv.subtotal + inv.tax_total == inv.total
    assert sum((li.amount for li in inv.lines), Decimal(0)) == (
        inv.total if mode == "inclusive" else inv.subtotal)
    if mode == "none":
        assert inv.tax_total == 0
