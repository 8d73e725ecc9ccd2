"""Matching BlueClerk's tax rates to the connected company's own tax codes.

Pure logic over two lists: BlueClerk's rates (seen on invoices) and the provider's sales
tax codes (QuickBooks TaxCode / automated sales tax, Xero `GET /TaxRates`, FreshBooks
`GET /taxes`). A rate is matched only when exactly one code fits, and every decision
carries its reason, so the wizard can show it and the user can override it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

__all__ = ["FREE_FORM_TAX", "BlueClerkTaxRate", "ProviderTaxRate", "TaxMatch",
           "match_tax_rate", "match_tax_rates"]


@dataclass(frozen=True, slots=True)
class ProviderTaxRate:
    """One sales tax code of the connected company."""

    code: str  # QuickBooks TaxCode id (or TAX/NON), Xero TaxType, FreshBooks tax name
    name: str
    rate: Decimal | None  # percent; None where the provider computes it (US AST)
    compound: bool = False
    # "automated": QuickBooks US automated sales tax, one code for every taxed line.
    kind: str = "rate"


@dataclass(frozen=True, slots=True)
class BlueClerkTaxRate:
    key: str  # InvoiceLine.tax_key
    name: str | None
    rate: Decimal
    compound: bool = False

    def label(self) -> str:
        return f"{self.name} ({_pct(self.rate)})" if self.name else _pct(self.rate)


@dataclass(frozen=True, slots=True)
class TaxMatch:
    rate: BlueClerkTaxRate
    code: ProviderTaxRate | None  # None: the user must choose
    reason: str
    candidates: tuple[ProviderTaxRate, ...] = ()


def _pct(rate: Decimal) -> str:
    return f"{rate.normalize():f}%"


def _same_name(a: str | None, b: str) -> bool:
    if not a:
        return False
    x, y = " ".join(a.casefold().split()), " ".join(b.casefold().split())
    return x == y or x in y or y in x


# Providers whose invoice lines carry a tax by name and percent, so a rate the company has
# not defined can still be written exactly (FreshBooks: taxName1/taxAmount1 per line).
FREE_FORM_TAX = frozenset({"freshbooks"})


def match_tax_rate(rate: BlueClerkTaxRate, codes: Sequence[ProviderTaxRate],
                   provider: str) -> TaxMatch:
    automated = [c for c in codes if c.kind == "automated"]
    if automated and rate.rate != 0:
        code = automated[0]
        return TaxMatch(rate, code, f"{provider} computes sales tax itself (automated sales "
                        f"tax): every taxed line uses {code.code}")
    same_rate = [c for c in codes if c.rate is not None and c.rate == rate.rate
                 and c.compound == rate.compound]
    what = f"{'compound ' if rate.compound else ''}rate {_pct(rate.rate)}"
    if len(same_rate) == 1:
        code = same_rate[0]
        named = " and name" if _same_name(rate.name, code.name) else ""
        return TaxMatch(rate, code, f"the only {provider} tax code at the same {what}{named}: "
                        f"{code.name} ({code.code})")
    if not same_rate and provider in FREE_FORM_TAX:
        name = rate.name or f"Tax {_pct(rate.rate)}"
        return TaxMatch(rate, ProviderTaxRate(name, name, rate.rate, rate.compound),
                        f"{provider} has no tax at {what}; lines carry it by name and "
                        f"percent ({name} {_pct(rate.rate)})")
    if not same_rate:
        return TaxMatch(rate, None, f"{provider} has no tax code at {what}; create one there "
                        "or choose the code to use")
    by_name = [c for c in same_rate if _same_name(rate.name, c.name)]
    if len(by_name) == 1:
        code = by_name[0]
        return TaxMatch(rate, code, f"same {what} and name as {code.name} ({code.code}), "
                        f"among {len(same_rate)} codes at that rate", tuple(same_rate))
    return TaxMatch(rate, None, f"{len(same_rate)} {provider} tax codes have the {what} ("
                    + ", ".join(f"{c.name} ({c.code})" for c in same_rate)
                    + "); choose the one to use", tuple(same_rate))


def match_tax_rates(rates: Iterable[BlueClerkTaxRate], codes: Sequence[ProviderTaxRate],
                    provider: str) -> list[TaxMatch]:
    return [match_tax_rate(r, codes, provider) for r in sorted(rates, key=lambda r: r.key)]
