"""Trade words glued into e-mail addresses (issue 15): every way the vocabulary writes a
trade is looked for, not only the first term of each stem, and a short trade form counts
at the end of a company's own domain, never inside a free-mail handle."""

from __future__ import annotations

from control.wizard import trades
from control.wizard.customer_types import ImportCandidate, suggest_customer_type


def person(given: str, family: str, email: str) -> ImportCandidate:
    return ImportCandidate(f"{given} {family}", given, family, email=email)


def test_every_written_form_of_a_stem_is_an_email_form() -> None:
    # "electrician" and "electrical" share the stem "electric"; so do "carpenter" and
    # "carpentry". The e-mail forms used to be built from the first of each only.
    forms = dict(trades.surface_forms())
    for written in ("electrician", "electrical", "carpenter", "carpentry"):
        assert written in forms, written
    assert forms["electrical"].stems == forms["electrician"].stems
    # each form names the list that writes it that way
    assert "lectrical" in forms["electrical"].source


def test_a_sole_trader_whose_address_names_a_second_form_of_the_trade() -> None:
    for candidate, form in (
        (person("Sam", "Ortiz", "samortizelectrical@gmail.com"), "electrical"),
        (person("Lena", "Marsh", "lenamarshcarpentry@outlook.com"), "carpentry"),
    ):
        s = suggest_customer_type(candidate)
        assert s.customer_type == "Builder", (candidate, s.reasons)
        assert any(f"'{form}'" in r for r in s.reasons)


def test_a_short_trade_form_at_the_end_of_an_own_domain_names_a_sole_trader() -> None:
    s = suggest_customer_type(person("Steve", "Barta", "steve@bartahvac.ca"))
    assert s.customer_type == "Builder", s.reasons
    assert any("'hvac'" in r for r in s.reasons)


def test_a_short_trade_form_counts_only_at_the_end_of_an_own_domain() -> None:
    assert trades.trade_in_label("bartahvac", short_at_end=True) is not None
    assert trades.trade_in_label("bartahvac", short_at_end=False) is None  # a handle
    assert trades.trade_in_label("tilemart", short_at_end=True) is None  # not at the end
    assert trades.trade_in_label("abhvac", short_at_end=True) is None  # no name before it
    # a free-mail handle ending in another word's letters is a person's, not a trade
    s = suggest_customer_type(person("Joe", "Verra", "joeversatile@gmail.com"))
    assert s.customer_type == "Homeowner", s.reasons
