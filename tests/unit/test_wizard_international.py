"""International phone numbers and postcodes in duplicate detection (issue 15)."""

from __future__ import annotations

import pytest

from control.wizard.customer_types import ImportCandidate, suggest_customer_type
from control.wizard.duplicates import (
    DEFAULT_THRESHOLD,
    ExistingCustomer,
    find_duplicates,
    normalise_phone,
    score_pair,
)
from control.wizard.normalise import (
    generation_suffix,
    legal_suffix,
    normalise_postcode,
    region_for,
    tag_name,
)
from schemas.records import Address

THREE_WAYS = {
    "GB": ("020 7946 0958", "+44 20 7946 0958", "0044 (0)20 7946 0958"),
    "AU": ("(02) 5550 1234", "+61 2 5550 1234", "02-5550-1234"),
    "JP": ("03-5550-1234", "+81 3 5550 1234", "+81 (0)3-5550-1234"),
}


@pytest.mark.parametrize("region", sorted(THREE_WAYS))
def test_the_same_number_written_three_ways_is_one_number(region: str) -> None:
    forms = THREE_WAYS[region]
    assert len({normalise_phone(f, region) for f in forms}) == 1
    existing = [ExistingCustomer(f"c{i}", f"Customer {i}", phone=f) for i, f in enumerate(forms)]
    for form in forms:
        [m0, m1, m2] = sorted(find_duplicates([ImportCandidate("Someone Else", phone=form)],
                                              existing, threshold=0.0, default_region=region),
                              key=lambda m: m.existing_id)
        for m in (m0, m1, m2):
            assert any(r.startswith("same phone +") for r in m.reasons), m.reasons


def test_numbers_sharing_their_last_ten_digits_are_different_numbers() -> None:
    uk, us = normalise_phone("020 7946 0958", "GB"), normalise_phone("+1 207 946 0958", "GB")
    assert uk == "+442079460958" and us == "+12079460958"
    assert uk[-10:] == us[-10:] and uk != us
    a = ImportCandidate("J Carter", phone="020 7946 0958")
    b = ExistingCustomer("x", "James Carter", phone="+1 207 946 0958")
    score, reasons = score_pair(a, b, default_region="GB")
    assert "but different phone numbers" in reasons
    assert not any(r.startswith("same phone") for r in reasons)
    assert score < DEFAULT_THRESHOLD


def test_national_numbers_follow_the_company_region() -> None:
    assert normalise_phone("09 379 0101", "NZ") == "+6493790101"
    assert normalise_phone("0491 570 156", "AU") == "+61491570156"
    # A record's own address country or postcode wins over the company's region.
    assert region_for("United Kingdom", None, "US") == "GB"
    assert region_for(None, "K1A 0B1", "US") == "CA"
    assert region_for(None, "2099", "AU") == "AU"


@pytest.mark.parametrize(("raw", "region", "code"), [
    ("sw1a1aa", "GB", "SW1A 1AA"), ("SW1A  1AA", None, "SW1A 1AA"), ("M1 1AE", "GB", "M1 1AE"),
    ("k1a0b1", "CA", "K1A 0B1"), ("78745-1234", "US", "78745"), ("2099", "AU", "2099"),
    ("〒154-0015", "JP", "154-0015"),
])
def test_postcodes_are_canonical(raw: str, region: str | None, code: str) -> None:
    postal = normalise_postcode(raw, region)
    assert postal is not None and postal.code == code


@pytest.mark.parametrize(("region", "a", "b"), [
    ("GB", "SW1A 1AA", "SW1A 1AB"),  # same first five characters, different postcodes
    ("CA", "M5J 2Z3", "M5J 2Z4"),
])
def test_full_postcode_is_compared_not_its_first_five_characters(
    region: str, a: str, b: str,
) -> None:
    assert normalise_postcode(a, region) != normalise_postcode(b, region)
    same = ImportCandidate("Emily Wong", address=Address("12 Albert Road", postal_code=a))
    other = ExistingCustomer("x", "Emily Wong", address=Address("12 Albert Road", postal_code=b))
    _, reasons = score_pair(same, other, default_region=region)
    assert "but different addresses" in reasons
    twin = ExistingCustomer("y", "Emily Wong", address=Address("12 Albert Rd",
                                                               postal_code=a.lower()))
    _, reasons = score_pair(same, twin, default_region=region)
    assert any(r.startswith("same address") for r in reasons)


def test_unit_before_number_in_australian_and_uk_addresses() -> None:
    a = ImportCandidate("Aisha Rahman",
                        address=Address("Unit 5/18 Macquarie Street", postal_code="2170"))
    b = ExistingCustomer("x", "Aisha Rahman",
                         address=Address("5/18 Macquarie St", postal_code="2170"))
    _, reasons = score_pair(a, b, default_region="AU")
    assert any(r.startswith("same address") for r in reasons)
    c = ImportCandidate("P Hughes", address=Address("Flat 3, 41 Lavender Hill"))
    d = ExistingCustomer("y", "Patricia Hughes", address=Address("Flat 4, 41 Lavender Hill"))
    _, reasons = score_pair(c, d, default_region="GB")
    assert any("different units (3 vs 4)" in r for r in reasons)


def test_legal_forms_titles_and_generations_from_the_libraries() -> None:
    assert legal_suffix("Ferraro Constructions Pty. Ltd.") == "Pty. Ltd."
    assert legal_suffix("Bloggs and Sons Builders Limited") == "Limited"
    assert legal_suffix("Les Excavations Bergeron Ltée") == "Ltée"
    assert legal_suffix("John Smith") is None
    assert generation_suffix("Peter Brown Jnr") == "jr"
    assert generation_suffix("Peter Brown Snr") == "sr"
    score, reasons = score_pair(ImportCandidate("Peter Brown Snr", phone="01223 496 014"),
                                ExistingCustomer("x", "Peter Brown Jnr", phone="01223 496014"),
                                default_region="GB")
    assert score < DEFAULT_THRESHOLD and any("generational" in r for r in reasons)


def test_name_model_tags_and_explains() -> None:
    household = tag_name("Mr. & Mrs. David Lee")
    assert household is not None and household.kind == "Household"
    company = tag_name("Harbor Construction LLC")
    assert company is not None and company.kind == "Corporation"
    assert tag_name("田中 博") is None  # the model reads Latin script only
    s = suggest_customer_type(ImportCandidate("Mary and Tom Baker"))
    assert s.customer_type == "Homeowner"
    assert "name tagged as a household by the name model" in s.reasons


def test_cross_script_names_are_not_held_against_a_match() -> None:
    a = ImportCandidate("王伟", phone="(02) 5550 8812",
                        address=Address("21 Marsden Street", postal_code="2150"))
    b = ExistingCustomer("x", "Wei Wang", phone="+61 2 5550 8812",
                         address=Address("21 Marsden St", postal_code="2150"))
    score, reasons = score_pair(a, b, default_region="AU")
    assert score >= DEFAULT_THRESHOLD
    assert any("different scripts" in r for r in reasons)


def test_held_out_floors() -> None:
    """Regression floors on the held-out set (measured, never tuned on; bench/README.md)."""
    import importlib.util
    import sys
    from pathlib import Path

    name = "bench_wizard_quality"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[2] / "bench" / "wizard_quality.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    bench = sys.modules[name]
    records = bench.load_holdout()
    assert len(records) >= 250
    dup = bench.evaluate_duplicates(records)
    # Measured: precision 0.988, recall 0.964 (likely tier).
    assert dup.precision >= 0.97
    assert dup.recall >= 0.95
    # Measured: 0.895 -- below the 0.97 aimed for (builders with unlisted trades).
    assert bench.evaluate_types(records).accuracy >= 0.88
