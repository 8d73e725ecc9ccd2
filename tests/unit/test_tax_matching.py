"""Automatic matching of BlueClerk tax rates to each region's own tax codes.

The provider lists are written out by hand from each provider's published defaults (not
produced by the code under test): QuickBooks US automated sales tax (TAX/NON), QuickBooks
UK/CA/AU tax codes, Xero NZ/AU/UK/US tax rates (`GET /TaxRates` TaxType and names as in
Xero's demo companies), FreshBooks taxes by name and percent.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from providers.taxes import BlueClerkTaxRate, ProviderTaxRate, match_tax_rate

D = Decimal

QBO_US = [ProviderTaxRate("TAX", "Automated sales tax", None, kind="automated")]
QBO_UK = [ProviderTaxRate("3", "20.0% S", D("20")), ProviderTaxRate("4", "5.0% R", D("5")),
          ProviderTaxRate("5", "0.0% Z", D("0")), ProviderTaxRate("6", "Exempt", D("0")),
          ProviderTaxRate("9", "20.0% ECG", D("20"))]
QBO_CA = [ProviderTaxRate("2", "GST", D("5")), ProviderTaxRate("7", "HST ON", D("13")),
          ProviderTaxRate("8", "PST BC", D("7")), ProviderTaxRate("10", "GST/QST QC", D("14.975"))]
QBO_AU = [ProviderTaxRate("11", "GST", D("10")), ProviderTaxRate("12", "GST free", D("0"))]
XERO_NZ = [ProviderTaxRate("OUTPUT2", "15% GST on Income", D("15")),
           ProviderTaxRate("NONE", "No GST", D("0")),
           ProviderTaxRate("ZERORATEDOUTPUT", "Zero Rated", D("0"))]
XERO_AU = [ProviderTaxRate("OUTPUT", "GST on Income", D("10")),
           ProviderTaxRate("EXEMPTOUTPUT", "GST Free Income", D("0"))]
XERO_UK = [ProviderTaxRate("OUTPUT2", "20% (VAT on Income)", D("20")),
           ProviderTaxRate("RROUTPUT", "5% (VAT on Income)", D("5")),
           ProviderTaxRate("ECOUTPUTSERVICES", "20% EC VAT on Services", D("20"))]
XERO_US = [ProviderTaxRate("TAX001", "Sales Tax", D("8.25")),
           ProviderTaxRate("TAX002", "City Tax", D("10"))]
FRESHBOOKS_CA = [ProviderTaxRate("GST", "GST", D("5")), ProviderTaxRate("PST", "PST", D("7")),
                 ProviderTaxRate("QST", "QST", D("9.975"), compound=True)]


def rate(percent: str, name: str | None = None, compound: bool = False) -> BlueClerkTaxRate:
    return BlueClerkTaxRate(f"r-{percent}", name, D(percent), compound)


@pytest.mark.parametrize(("codes", "provider", "percent", "name", "expected"), [
    (QBO_US, "quickbooks", "8.25", None, "TAX"),  # one automated code for any taxed rate
    (QBO_US, "quickbooks", "10", "City", "TAX"),
    (QBO_UK, "quickbooks", "5", "Reduced", "4"),
    (QBO_CA, "quickbooks", "13", "HST", "7"),
    (QBO_CA, "quickbooks", "14.975", None, "10"),
    (QBO_AU, "quickbooks", "10", None, "11"),
    (XERO_NZ, "xero", "15", "GST", "OUTPUT2"),
    (XERO_AU, "xero", "10", "GST", "OUTPUT"),
    (XERO_UK, "xero", "5", None, "RROUTPUT"),
    (XERO_US, "xero", "8.25", "Sales tax", "TAX001"),
    (FRESHBOOKS_CA, "freshbooks", "5", "GST", "GST"),
])
def test_exact_rate(codes: list[ProviderTaxRate], provider: str, percent: str,
                    name: str | None, expected: str) -> None:
    match = match_tax_rate(rate(percent, name), codes, provider)
    assert match.code is not None and match.code.code == expected
    assert match.reason


def test_rate_plus_name_picks_among_codes_at_one_rate() -> None:
    match = match_tax_rate(rate("20", "VAT on Income"), XERO_UK, "xero")
    assert match.code is not None and match.code.code == "OUTPUT2"
    assert "name" in match.reason and len(match.candidates) == 2
    exempt = match_tax_rate(rate("0", "Exempt"), QBO_UK, "quickbooks")
    assert exempt.code is not None and exempt.code.code == "6"


def test_two_codes_at_20_percent_ask_the_user() -> None:
    match = match_tax_rate(rate("20", "Standard"), QBO_UK, "quickbooks")
    assert match.code is None
    assert {c.code for c in match.candidates} == {"3", "9"}
    assert "20.0% S" in match.reason and "20.0% ECG" in match.reason
    assert "choose" in match.reason


def test_no_code_at_the_rate_asks_the_user() -> None:
    match = match_tax_rate(rate("8.25", "Sales tax"), XERO_NZ, "xero")
    assert match.code is None and "no tax code at rate 8.25%" in match.reason


def test_compound_matches_compound_only() -> None:
    qst = match_tax_rate(rate("9.975", "QST", compound=True), FRESHBOOKS_CA, "freshbooks")
    assert qst.code is not None and qst.code.compound and qst.code.code == "QST"
    # A simple 9.975% is not the compound QST; on QuickBooks CA nothing fits it.
    simple = match_tax_rate(rate("9.975", "QST"), QBO_CA, "quickbooks")
    assert simple.code is None
    compound_on_xero = match_tax_rate(rate("15", "GST", compound=True), XERO_NZ, "xero")
    assert compound_on_xero.code is None


def test_freshbooks_takes_an_undefined_rate_by_name_and_percent() -> None:
    """FreshBooks invoice lines carry taxName/taxAmount (a percent) themselves, so a rate
    the business has not defined is still written exactly, under BlueClerk's name."""
    match = match_tax_rate(rate("8.875", "NYC Sales Tax"), FRESHBOOKS_CA, "freshbooks")
    assert match.code is not None
    assert (match.code.name, match.code.rate) == ("NYC Sales Tax", D("8.875"))
    assert "name and percent" in match.reason


def test_rates_compare_as_numbers() -> None:
    match = match_tax_rate(BlueClerkTaxRate("k", None, D("15.0000")), XERO_NZ, "xero")
    assert match.code is not None and match.code.code == "OUTPUT2"
