"""Sales tax of a simulated QuickBooks company, by region.

A realm is US (the default) or UK / CA / AU, chosen by ``POST /_sandbox/seed/{realm}`` with
``{"Region": ...}``. Rules (sources in ``README.md``: rules T1-T10, assumptions A6-A14):

US -- automated sales tax (providers.md 1.8; Intuit "Manage sales tax for US locales"):
``Preferences.TaxPrefs.PartnerTaxEnabled`` is true, a line's ``TaxCodeRef`` is ``TAX`` or
``NON`` (absent: ``NON``), an explicit ``TxnTaxDetail.TotalTax`` is honoured. The simulator
has no address-based engine: without ``TotalTax`` the tax is 0 (README "Not simulated").

UK / CA / AU -- the company's own tax codes (providers.md section 0; Intuit "Manage sales
tax for non-US locales"):
- Every ``SalesItemLineDetail`` line needs a ``TaxCodeRef`` naming one of the company's
  TaxCodes, else 400 / 6000 "Make sure all your transactions have a VAT rate before you
  save." (UK, intuit/quickbooks-online-mcp-server #94) / "... a GST/HST rate ..." (CA,
  activepieces/activepieces #8539) / "... a GST rate ..." (AU: by analogy, ASSUMPTION).
- A TaxCode's ``SalesTaxRateList.TaxRateDetail[].TaxRateRef`` names TaxRates whose
  ``RateValue`` is a percent (Finance.xsd ``TaxCode``, ``TaxRateDetail``, ``TaxRate``).
- QuickBooks computes the tax; a ``TotalTax`` sent by the client is replaced (Teachworks,
  "Sales Tax Treatment for Global QuickBooks Users": QuickBooks "will recalculate the sales
  tax for each line item and overrides the sales tax total").
- Line by line: each line's tax is its tax-exclusive ``Amount`` x rate, rounded to the
  currency's minor unit, then summed (Intuit community, en-ca threads 306952 and 1567567:
  "QuickBooks Online will always calculate line-by-line"; the 31 lines at 1.59 x 12% =
  9.71, not 81.09 x 12% = 9.73). A code with several rates (GST/PST BC = GST 5% + PST 7%)
  rounds each rate's tax on the line separately (ASSUMPTION: per rate, as each rate is
  reported to its own agency; ruckus/quickbooks-ruby #547 shows QST alone on a line).
  Half-up rounding is an ASSUMPTION (no source says half-even).
- ``TaxTypeApplicable`` ``TaxOnAmount`` taxes the line amount; ``TaxOnAmountPlusTax``
  taxes the amount plus the taxes of lower ``TaxOrder`` (Finance.xsd
  ``TaxTypeApplicablityEnum``; the arithmetic is an ASSUMPTION read from the names).
- ``TxnTaxDetail.TaxLine``: one ``TaxLineDetail`` per TaxRate used, ``NetAmountTaxable``
  the total of the lines it applies to (Finance.xsd ``TaxLineDetail/NetAmountTaxable``).
- ``TaxInclusive``: ``Line.Amount`` stays exclusive (Finance.xsd ``TaxInclusiveAmt``), the
  tax is computed from it as above, and ``TaxInclusiveAmt`` becomes Amount + that tax, so
  the line total can differ by a cent from the gross the client had (Teachworks, same page:
  "their method can result in rounding to a different cent, which results in a different
  line total"; the recomputation of a sent ``TaxInclusiveAmt`` is an ASSUMPTION).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

__all__ = ["REGIONS", "US_CODES", "RegionSpec", "TaxPart", "code_parts", "line_taxes"]

JSON = dict[str, Any]


def _rate(ident: str, name: str, value: str, agency: str, special: str = "NONE") -> JSON:
    return {"Id": ident, "Name": name, "Description": name, "Active": True,
            "RateValue": Decimal(value), "AgencyRef": {"value": agency},
            "SpecialTaxType": special, "DisplayType": "ReadOnly",
            "EffectiveTaxRate": [{"RateValue": Decimal(value),
                                  "EffectiveDate": "2011-01-04T00:00:00Z"}]}


def _code(ident: str, name: str, description: str, rates: list[tuple[str, str]],
          taxable: bool = True, applicable: str = "TaxOnAmount") -> JSON:
    details = [{"TaxRateRef": {"value": rid, "name": rname},
                "TaxTypeApplicable": applicable if n else "TaxOnAmount", "TaxOrder": n}
               for n, (rid, rname) in enumerate(rates)]
    return {"Id": ident, "Name": name, "Description": description, "Active": True,
            "Hidden": False, "Taxable": taxable, "TaxGroup": len(rates) > 1,
            "SalesTaxRateList": {"TaxRateDetail": details},
            "PurchaseTaxRateList": {"TaxRateDetail": []},
            "TaxCodeConfigType": "SYSTEM_GENERATED"}


@dataclass(frozen=True)
class RegionSpec:
    region: str
    country: str  # CompanyInfo.Country
    currency: str
    missing_code: str  # the 6000 Detail for a line without a TaxCode
    rates: list[JSON] = field(default_factory=list)
    codes: list[JSON] = field(default_factory=list)


# US companies: TAX / NON only (automated sales tax assigns the jurisdictions' rates).
US_CODES: list[JSON] = [
    {"Id": "TAX", "Name": "TAX", "Description": "Taxable (automated sales tax)",
     "Active": True, "Taxable": True, "TaxGroup": False},
    {"Id": "NON", "Name": "NON", "Description": "Non-taxable", "Active": True,
     "Taxable": False, "TaxGroup": False},
]

# Default codes and rates per region. Names and percents: Intuit "VAT codes in QuickBooks
# Online" (en-uk), "Common sales tax codes" (en-ca), QuickBooks AU community "GST free" /
# "Out of Scope"; Ids, agencies and descriptions are the simulator's own.
REGIONS: dict[str, RegionSpec] = {
    "UK": RegionSpec(
        "UK", "GB", "GBP", "Make sure all your transactions have a VAT rate before you save.",
        rates=[_rate("4", "20.0% S", "20", "1"), _rate("6", "5.0% R", "5", "1"),
               _rate("8", "0.0% Z", "0", "1", "ZERO_RATE"), _rate("10", "Exempt", "0", "1"),
               _rate("12", "No VAT", "0", "1")],
        codes=[_code("3", "20.0% S", "Standard", [("4", "20.0% S")]),
               _code("5", "5.0% R", "Reduced", [("6", "5.0% R")]),
               _code("7", "0.0% Z", "Zero-rated", [("8", "0.0% Z")]),
               _code("9", "Exempt", "Exempt", [("10", "Exempt")], taxable=False),
               _code("11", "No VAT", "No VAT", [("12", "No VAT")], taxable=False)]),
    "CA": RegionSpec(
        "CA", "CA", "CAD",
        "Make sure all your transactions have a GST/HST rate before you save.",
        rates=[_rate("1", "GST", "5", "1"), _rate("2", "HST ON", "13", "1"),
               _rate("3", "PST BC", "7", "2"), _rate("4", "QST", "9.975", "3"),
               _rate("5", "Zero-rated", "0", "1", "ZERO_RATE"), _rate("6", "Exempt", "0", "1"),
               _rate("7", "Out of Scope", "0", "1")],
        codes=[_code("2", "Zero-rated", "Zero-rated", [("5", "Zero-rated")]),
               _code("3", "Exempt", "Tax-exempt", [("6", "Exempt")], taxable=False),
               _code("4", "Out of Scope", "Nontaxable goods and services",
                     [("7", "Out of Scope")], taxable=False),
               _code("5", "GST", "Federal goods & services tax", [("1", "GST")]),
               _code("6", "HST ON", "Harmonized federal and Ontario provincial tax",
                     [("2", "HST ON")]),
               _code("7", "GST/PST BC", "Federal and provincial tax (BC)",
                     [("1", "GST"), ("3", "PST BC")]),
               _code("8", "GST/QST QC", "Combined federal and Québec provincial tax",
                     [("1", "GST"), ("4", "QST")])]),
    "AU": RegionSpec(
        "AU", "AU", "AUD", "Make sure all your transactions have a GST rate before you save.",
        rates=[_rate("1", "GST (sales)", "10", "1"),
               _rate("2", "GST free (sales)", "0", "1", "ZERO_RATE"),
               _rate("3", "Out of Scope", "0", "1")],
        codes=[_code("4", "GST", "GST on sales", [("1", "GST (sales)")]),
               _code("5", "GST free", "GST free sales", [("2", "GST free (sales)")]),
               _code("6", "Out of Scope", "Out of scope of GST", [("3", "Out of Scope")],
                     taxable=False)]),
}


@dataclass(frozen=True)
class TaxPart:
    rate_id: str
    percent: Decimal
    tax: Decimal
    base: Decimal


def code_parts(code: JSON) -> list[JSON]:
    details = ((code.get("SalesTaxRateList") or {}).get("TaxRateDetail")) or []
    return sorted((d for d in details if isinstance(d, dict)),
                  key=lambda d: int(d.get("TaxOrder") or 0))


def _round(value: Decimal, places: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def line_taxes(code: JSON, rates: Mapping[str, JSON], net: Decimal,
               places: int) -> list[TaxPart]:
    """The tax of one line under one TaxCode: each of its sales rates, rounded on the line."""
    parts: list[TaxPart] = []
    for detail in code_parts(code):
        rate_id = str((detail.get("TaxRateRef") or {}).get("value"))
        rate = rates[rate_id]
        percent = Decimal(str(rate.get("RateValue", 0)))
        applicable = detail.get("TaxTypeApplicable") or "TaxOnAmount"
        earlier = sum((p.tax for p in parts), Decimal(0))
        if applicable == "TaxOnAmountPlusTax":
            base = net + earlier
        elif applicable == "TaxOnTax":
            base = earlier
        else:
            base = net
        parts.append(TaxPart(rate_id, percent, _round(base * percent / 100, places), net))
    return parts
