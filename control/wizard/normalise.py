"""Field-standard normalisation for the setup wizard, on well-kept libraries.

* phone numbers: ``phonenumbers`` (Google's libphonenumber metadata), compared in E.164
  with the company's country as the default region;
* postcodes: compared whole, in the canonical form of the country they belong to (a UK
  ``SW1A 1AA`` or a Canadian ``K1A 0B1`` is not cut to its first five characters; a US
  ZIP+4 is compared on its ZIP);
* company legal forms: ``cleanco``'s terms for many countries (Ltd, Pty Ltd, GmbH, Inc...);
* names: ``probablepeople`` (a CRF trained to tag a name as a person, a household or a
  corporation, run offline) and ``nameparser``'s titles and generational suffixes;
* US street addresses: ``usaddress`` (a CRF trained on US addresses) when the line does
  not have the plain "number street [type] [unit]" shape read directly.

Every function here is pure and cached, so 5,000 x 5,000 matching stays fast.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import phonenumbers
import probablepeople
import usaddress
from cleanco.clean import get_unique_terms, normalize_terms
from nameparser.config import CONSTANTS as NAME_CONSTANTS

__all__ = [
    "NameTag",
    "PostalCode",
    "StreetAddress",
    "format_phone",
    "generation_suffix",
    "is_title",
    "legal_suffix",
    "normalise_phone",
    "normalise_postcode",
    "parse_street",
    "region_for",
    "tag_name",
]

DEFAULT_REGION = "US"

# Country names as they appear in address books, to ISO 3166 alpha-2.
_COUNTRY_NAMES: dict[str, str] = {
    "us": "US", "usa": "US", "united states": "US", "united states of america": "US",
    "gb": "GB", "uk": "GB", "united kingdom": "GB", "great britain": "GB", "england": "GB",
    "scotland": "GB", "wales": "GB", "northern ireland": "GB", "au": "AU", "australia": "AU",
    "nz": "NZ", "new zealand": "NZ", "aotearoa": "NZ", "ca": "CA", "canada": "CA",
    "jp": "JP", "japan": "JP", "ie": "IE", "ireland": "IE",
}  # fmt: skip


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def country_code(country: str | None) -> str | None:
    """ISO alpha-2 for a country written as a code or a common name, else None."""
    if not country or not country.strip():
        return None
    text = " ".join(_fold(country).replace(".", "").split())
    if text in _COUNTRY_NAMES:
        return _COUNTRY_NAMES[text]
    if len(text) == 2 and text.isalpha():
        return text.upper()
    return None


# --------------------------------------------------------------------------- postcodes

_UK_POSTCODE = re.compile(r"^([A-Z]{1,2}[0-9][A-Z0-9]?)([0-9][A-Z]{2})$")
_CA_POSTCODE = re.compile(r"^([ABCEGHJ-NPRSTVXY][0-9][A-Z])([0-9][A-Z][0-9])$")
_US_ZIP = re.compile(r"^([0-9]{5})(?:-?[0-9]{4})?$")
_JP_POSTCODE = re.compile(r"^([0-9]{3})-?([0-9]{4})$")
_FOUR_DIGITS = re.compile(r"^[0-9]{4}$")


@dataclass(frozen=True, slots=True)
class PostalCode:
    code: str  # canonical, compared whole: "SW1A 1AA", "K1A 0B1", "78745", "2099"
    region: str | None  # the country the shape (or the company) says it belongs to


@lru_cache(maxsize=65536)
def normalise_postcode(raw: str | None, default_region: str | None = None) -> PostalCode | None:
    """The postcode in its country's canonical form, or None if empty.

    The shape decides where it is unambiguous (a UK or Canadian postcode, a Japanese
    〒123-4567); a four-digit code is Australian or New Zealand's, taken from the company's
    country; a US ZIP+4 is kept to its ZIP. Anything else is kept whole, upper-cased and
    without spaces: never cut to a prefix."""
    if not raw:
        return None
    compact = re.sub(r"[\s\u3000]", "", unicodedata.normalize("NFKC", raw)).upper()
    compact = compact.removeprefix("〒")
    if not compact:
        return None
    if (m := _UK_POSTCODE.match(compact)) and not (
        default_region == "CA" and _CA_POSTCODE.match(compact)
    ):
        return PostalCode(f"{m.group(1)} {m.group(2)}", "GB")
    if m := _CA_POSTCODE.match(compact):
        return PostalCode(f"{m.group(1)} {m.group(2)}", "CA")
    if default_region == "JP" and (m := _JP_POSTCODE.match(compact)):
        return PostalCode(f"{m.group(1)}-{m.group(2)}", "JP")
    if "-" in compact and (m := _JP_POSTCODE.match(compact)):
        return PostalCode(f"{m.group(1)}-{m.group(2)}", "JP")
    if m := _US_ZIP.match(compact):
        return PostalCode(m.group(1), "US")
    if _FOUR_DIGITS.match(compact):
        region = default_region if default_region in ("AU", "NZ") else None
        return PostalCode(compact, region)
    return PostalCode(compact.replace("-", ""), default_region)


def region_for(country: str | None, postcode: str | None, default_region: str | None) -> str:
    """The region to read a record's phone number in: its address's country, else the
    country its postcode's shape gives, else the company's."""
    code = country_code(country)
    if code:
        return code
    postal = normalise_postcode(postcode, default_region)
    if postal is not None and postal.region in ("GB", "CA", "JP"):
        return postal.region
    return default_region or DEFAULT_REGION


# --------------------------------------------------------------------------- phones

_EXTENSION = re.compile(r"(?i)\s*(?:ext\.?|extn\.?|x|#)\s*\d+\s*$")


@lru_cache(maxsize=65536)
def normalise_phone(phone: str | None, region: str = DEFAULT_REGION) -> str | None:
    """The number in E.164 ("+442079460958"), read with ``region`` as the default for
    numbers written without a country code; None if it is not a possible number.

    The extension is dropped. Numbers are compared whole: a UK 020 7946 0958 and a US
    (207) 946-0958 share their last ten digits and are different numbers."""
    if not phone or not phone.strip():
        return None
    text = _EXTENSION.sub("", phone.strip())
    if sum(ch.isdigit() for ch in text) < 7:
        return None
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@lru_cache(maxsize=65536)
def format_phone(e164: str) -> str:
    """An E.164 number written the international way, for the reasons shown to users."""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


# --------------------------------------------------------------------------- legal forms


def _legal_terms() -> frozenset[tuple[str, ...]]:
    """cleanco's legal-form terms (all countries) as token tuples, accents and dots folded.

    Two-letter terms that are also common name words ("da", "as", "og") are kept only in
    the forms that are unambiguous in English-language books."""
    keep_short = {"co", "lp", "pc", "kk", "ag", "sa", "bv", "nv", "oy", "ab"}
    terms: set[tuple[str, ...]] = set()
    for term in normalize_terms(get_unique_terms()):
        tokens = tuple(re.sub(r"[^\w&]+", " ", term).split())
        if not tokens or (len(tokens) == 1 and len(tokens[0]) < 3 and tokens[0] not in
                          keep_short):
            continue
        terms.add(tokens)
    # Forms cleanco lacks that our providers' books use (Québec, Japan, NZ Māori trusts).
    terms.update({("ltee",), ("senc",), ("s", "e", "n", "c"), ("llc",), ("pllc",), ("pty",),
                  ("pty", "ltd"), ("inc",), ("corp",), ("kk",)})
    return frozenset(terms)


LEGAL_TERMS = _legal_terms()
_LEGAL_MAX = max(len(t) for t in LEGAL_TERMS)
LEGAL_TOKENS = frozenset(t for term in LEGAL_TERMS for t in term if len(t) >= 3)


def _legal_tokens(text: str) -> list[str]:
    folded = _fold(text).replace("&", " & ")
    folded = re.sub(r"\b([a-z])\.(?=[a-z]\.)", r"\1", folded)  # "l.l.c." -> "llc."
    return re.sub(r"[^\w&]+", " ", folded.replace(".", "")).split()


@lru_cache(maxsize=65536)
def legal_suffix(name: str) -> str | None:
    """The legal form at the end of a company name ("Pty Ltd", "GmbH", "Ltée"), as written,
    or None. Found with cleanco's terms for many countries."""
    tokens = _legal_tokens(name)
    for size in range(min(_LEGAL_MAX, len(tokens) - 1), 0, -1):
        if tuple(tokens[-size:]) in LEGAL_TERMS:
            raw = name.strip().rstrip(",) ").split()
            return " ".join(raw[-size:]).strip(",()") if len(raw) >= size else None
    return None


# --------------------------------------------------------------------------- names

NameKind = Literal["Person", "Household", "Corporation"]


@dataclass(frozen=True, slots=True)
class NameTag:
    kind: NameKind
    parts: tuple[tuple[str, str], ...]  # (token, label) from the model


def _fold_keep_case(text: str) -> str:
    """Accents stripped, case kept: the name model was trained on unaccented names."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _latin(text: str) -> bool:
    return all(not ch.isalpha() or ord(ch) <= 0x24F for ch in text)


@lru_cache(maxsize=65536)
def tag_name(name: str) -> NameTag | None:
    """probablepeople's reading of a name: a person, a household (a couple, a family) or a
    corporation; None for names the model cannot read (non-Latin script, ambiguous)."""
    text = " ".join(_fold_keep_case(name).split())
    if not text or not _latin(text) or not any(ch.isalpha() for ch in text):
        return None
    try:
        tagged, kind = probablepeople.tag(text)
    except probablepeople.RepeatedLabelError:
        return None
    if kind not in ("Person", "Household", "Corporation"):
        return None
    return NameTag(kind, tuple((v, k) for k, v in tagged.items()))


TITLES = frozenset(NAME_CONSTANTS.titles) | {"mx", "san", "sama"}
GENERATIONS = frozenset({"jr", "sr", "jnr", "snr", "ii", "iii", "iv", "v"}) & (
    frozenset(NAME_CONSTANTS.suffix_acronyms) | frozenset(NAME_CONSTANTS.suffix_not_acronyms)
    | {"jnr", "snr"}
)
NAME_SUFFIXES = frozenset(NAME_CONSTANTS.suffix_acronyms) | frozenset(
    NAME_CONSTANTS.suffix_not_acronyms)


def is_title(token: str) -> bool:
    """A title or honorific (nameparser's list: Mr, Mrs, Dr, Rev, Sir, ...)."""
    return token.lower().strip(".") in TITLES


def generation_suffix(name: str) -> str | None:
    """The generational suffix at the end of a person's name ("Jr", "Snr", "III"), folded
    so that Jr = Jnr and Sr = Snr; None if there is none."""
    tokens = re.sub(r"[^\w]+", " ", _fold(name)).split()
    if len(tokens) < 2 or tokens[-1] not in GENERATIONS:
        return None
    return {"jnr": "jr", "snr": "sr"}.get(tokens[-1], tokens[-1])


# --------------------------------------------------------------------------- US addresses

@dataclass(frozen=True, slots=True)
class StreetAddress:
    number: str | None
    street: tuple[str, ...]  # street name words, without type or direction
    unit: str | None


_SIMPLE_STREET = re.compile(r"^\d+[a-z]? [a-z][a-z ]*$")


@lru_cache(maxsize=65536)
def parse_street(line: str) -> StreetAddress | None:
    """A US street line read by usaddress: house number, street name, unit; None if the
    model finds no street (a PO box, a building name only)."""
    try:
        tagged, kind = usaddress.tag(line)
    except usaddress.RepeatedLabelError:
        return None
    if kind != "Street Address":
        return None
    number = tagged.get("AddressNumber")
    name = tagged.get("StreetName")
    if not name:
        return None
    unit = tagged.get("OccupancyIdentifier")
    words = tuple(re.sub(r"[^\w]+", " ", _fold(name)).split())
    return StreetAddress(
        _fold(number).replace(" ", "") if number else None,
        words,
        (_fold(unit).lstrip("#").strip().lstrip("0") or "0") if unit else None,
    )
