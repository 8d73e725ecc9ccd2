"""Money and currency rules: Decimal end to end, rounded to each currency's minor unit."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

__all__ = ["MINOR_UNITS", "UnknownCurrency", "is_known_currency", "minor_unit", "quantize_money"]

# ISO 4217 minor units for the currencies BlueClerk accounts bill in. A code that is
# not listed is rejected rather than guessed: a wrong exponent silently changes totals.
MINOR_UNITS: dict[str, int] = {
    "USD": 2, "CAD": 2, "GBP": 2, "EUR": 2, "AUD": 2, "NZD": 2, "ZAR": 2, "MXN": 2,
    "CHF": 2, "SEK": 2, "NOK": 2, "DKK": 2, "SGD": 2, "HKD": 2, "INR": 2, "PHP": 2,
    "JPY": 0, "KRW": 0, "CLP": 0, "ISK": 0, "VND": 0,
    "KWD": 3, "BHD": 3, "JOD": 3, "OMR": 3, "TND": 3,
}


class UnknownCurrency(ValueError):
    """Raised for a currency code outside ISO 4217's table above."""


def is_known_currency(code: str) -> bool:
    return code in MINOR_UNITS


def minor_unit(code: str) -> int:
    try:
        return MINOR_UNITS[code]
    except KeyError:
        raise UnknownCurrency(f"unknown currency code {code!r}") from None


def quantize_money(amount: Decimal, currency: str) -> Decimal:
    """Round half up to the currency's minor unit (how invoices are printed)."""
    exponent = Decimal(1).scaleb(-minor_unit(currency))
    return amount.quantize(exponent, rounding=ROUND_HALF_UP)
