"""Find customers in an import file that probably already exist in BlueClerk.

Each (candidate, existing) pair gets evidence from four sources: the name
(fuzzy, initials, nicknames, "Family, Given" order, titles and legal forms), the e-mail,
the phone and the address.  Phones are compared in E.164 (``phonenumbers``, read with
the company's country as the default region), postcodes whole in their country's form,
US street lines through ``usaddress`` when they are not of the plain "number street
[type]" shape, company legal forms through ``cleanco``'s terms and titles and generational
suffixes through ``nameparser``'s (see ``control.wizard.normalise``).  Every piece of
evidence carries a log-odds weight; the weights are
added to a prior and squashed with a logistic function into a score in (0, 1).
A pair whose score reaches ``threshold`` is a *likely* duplicate.  Every report lists
the evidence as sentences so the wizard can show *why* two records look alike.

Below the threshold, a pair whose only link is the person's name -- the same surname and a
first name that could be the same one ("J." for "John", "Bob" for "Robert") -- and which has
nothing against it (no differing e-mail, phone or address) is reported as a *possible*
duplicate, ranked after the likely ones, so the user decides: the help text's "John Smith"
vs "J. Smith" is such a pair when nothing else is known.  "J." could as well be "Jane", so
these are never scored as likely and the quality bench measures precision on the likely
tier only.

To stay fast on 5,000 x 5,000 the pairs are not all scored: existing customers
are indexed by e-mail, phone, address, name tokens and one-deletion typo keys
of those tokens, and only pairs sharing a key are considered.  Pairs that share
nothing but a name token are pre-filtered with ``rapidfuzz.process.extract``.  Possible
matches come from one more index: surname + first initial and surname + canonical nickname.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal, Protocol

from rapidfuzz import fuzz, process
from rapidfuzz.distance import Indel

from control.wizard import normalise as norm
from control.wizard.customer_types import (
    BUILDER_TERMS,
    BUSINESS_TERMS,
    COMPANY_SUFFIXES,
    FREE_MAIL_DOMAINS,
    ImportCandidate,
)
from schemas.records import Address, Customer

__all__ = [
    "DEFAULT_THRESHOLD",
    "TIERS",
    "DuplicateMatch",
    "ExistingCustomer",
    "find_duplicates",
    "find_duplicates_all_pairs",
    "normalise_email",
    "normalise_name",
    "normalise_phone",
    "score_pair",
]

DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True, slots=True)
class ExistingCustomer:
    """A customer already in BlueClerk, as the duplicate finder sees it."""

    id: str
    display_name: str
    given_name: str | None = None
    family_name: str | None = None
    company_name: str | None = None
    email: str | None = None
    phone: str | None = None
    address: Address | None = None
    notes: str | None = None

    @classmethod
    def from_customer(cls, customer: Customer) -> ExistingCustomer:
        return cls(
            id=customer.id,
            display_name=customer.display_name,
            given_name=customer.given_name,
            family_name=customer.family_name,
            company_name=customer.company_name,
            email=customer.email,
            phone=customer.phone,
            address=customer.billing_address,
        )


Tier = Literal["likely", "possible"]
TIERS: tuple[Tier, ...] = ("likely", "possible")  # in the order they are shown


@dataclass(frozen=True, slots=True)
class DuplicateMatch:
    candidate_index: int
    existing_id: str
    score: float
    reasons: tuple[str, ...]
    # "likely": score >= threshold. "possible": below it, only the name links the two
    # (same surname, compatible first name) and nothing contradicts it; the user decides.
    tier: Tier = "likely"


class CustomerLike(Protocol):
    @property
    def display_name(self) -> str: ...
    @property
    def given_name(self) -> str | None: ...
    @property
    def family_name(self) -> str | None: ...
    @property
    def company_name(self) -> str | None: ...
    @property
    def email(self) -> str | None: ...
    @property
    def phone(self) -> str | None: ...
    @property
    def address(self) -> Address | None: ...


# --------------------------------------------------------------------------- weights

PRIOR = -4.0
W_NAME_EXACT = 4.5
W_NAME_TYPO = 3.0
W_NAME_INITIAL = 2.5
W_NAME_NICKNAME = 2.8
W_NAME_FAMILY_ONLY = 1.0
W_NAME_FUZZY_HIGH = 3.5
W_NAME_FUZZY_MID = 2.0
W_NAME_CONTAINED = 2.0
W_NAME_WEAK = 0.5
W_NAME_GIVEN_CONFLICT = -3.5
W_NAME_TOKEN_CONFLICT = -3.0
W_NAME_DIFFERENT = -2.5
W_EMAIL_SAME = 5.0
W_EMAIL_DIFFERENT = -0.8
W_DOMAIN_SAME_ORG = 1.5
W_PHONE_SAME = 3.5
W_PHONE_DIFFERENT = -0.7
W_ADDRESS_SAME = 2.5
W_ADDRESS_DIFFERENT = -0.5
W_UNIT_DIFFERENT = -1.5
W_POSTAL_SAME = 0.4
W_GENERATION_DIFFERENT = -10.0

MAX_NAME_BLOCK = 400
# Pairs that share only a name token can reach the threshold only through name evidence of
# weight >= 3 (exact, near-exact or a one-letter typo), all of which have token_set_ratio
# well above 80, so the cut loses nothing (checked against the all-pairs reference in tests).
NAME_PREFILTER_CUTOFF = 80.0

# --------------------------------------------------------------------------- normalisation

_NAME_DROP = COMPANY_SUFFIXES | {"the", "mr", "mrs", "ms", "miss", "mx", "dr", "jr", "sr", "ii",
                                 "iii", "iv", "san", "sama", "esq", "family", "household",
                                 "residence", "jnr", "snr"}
_EXPANSIONS: dict[str, tuple[str, ...]] = {
    "hoa": ("homeowners", "association"), "mgmt": ("management",), "assn": ("association",),
    "assoc": ("associates",), "bros": ("brothers",), "intl": ("international",),
    "svc": ("services",), "svcs": ("services",), "ctr": ("center",), "centre": ("center",),
    "dept": ("department",), "st": ("saint",), "mt": ("mount",), "ft": ("fort",),
    "apts": ("apartments",), "gc": ("general", "contractors"),
}  # fmt: skip
_JP_FORMS = ("株式会社", "有限会社", "合同会社", "(株)")
_ORG_WORDS = frozenset(
    w for w in list(BUILDER_TERMS) + list(BUSINESS_TERMS) if " " not in w and w.isascii()
) | {"landscaping", "cleaning", "pest", "services", "and", "of"}

NICKNAMES: dict[str, str] = {
    "bob": "robert", "bobby": "robert", "rob": "robert", "robbie": "robert",
    "bill": "william", "billy": "william", "will": "william", "liam": "william",
    "jim": "james", "jimmy": "james", "jamie": "james", "mike": "michael", "mick": "michael",
    "liz": "elizabeth", "beth": "elizabeth", "betty": "elizabeth", "eliza": "elizabeth",
    "kate": "katherine", "katie": "katherine", "kathy": "katherine", "cathy": "katherine",
    "catherine": "katherine", "kathryn": "katherine", "dave": "david", "tom": "thomas",
    "tommy": "thomas", "chris": "christopher", "dan": "daniel", "danny": "daniel",
    "joe": "joseph", "joey": "joseph", "steve": "steven", "stephen": "steven",
    "tony": "anthony", "rick": "richard", "dick": "richard", "rich": "richard",
    "jen": "jennifer", "jenny": "jennifer", "pat": "patricia", "patty": "patricia",
    "sam": "samuel", "ben": "benjamin", "matt": "matthew", "nick": "nicholas",
    "ed": "edward", "eddie": "edward", "ted": "edward", "al": "albert", "alex": "alexander",
    "peggy": "margaret", "maggie": "margaret", "meg": "margaret", "sue": "susan",
    "susie": "susan", "andy": "andrew", "drew": "andrew", "greg": "gregory", "ron": "ronald",
    "don": "donald", "jerry": "gerald", "larry": "lawrence", "tim": "timothy",
    "ken": "kenneth", "kenny": "kenneth", "jeff": "jeffrey", "charlie": "charles",
    "chuck": "charles", "hank": "henry", "harry": "henry", "jack": "john", "johnny": "john",
    "abby": "abigail", "vicky": "victoria", "tori": "victoria", "becky": "rebecca",
    "manny": "manuel", "pepe": "jose", "paco": "francisco", "frank": "francis",
    "fran": "frances", "debbie": "deborah", "deb": "deborah", "cindy": "cynthia",
    "sandy": "sandra", "terry": "terrence", "walt": "walter", "nate": "nathan",
}  # fmt: skip

STREET_ABBREVIATIONS: dict[str, str] = {
    "street": "st", "str": "st", "avenue": "ave", "av": "ave", "aven": "ave", "road": "rd",
    "drive": "dr", "drv": "dr", "boulevard": "blvd", "boul": "blvd", "lane": "ln",
    "court": "ct", "place": "pl", "terrace": "ter", "circle": "cir", "highway": "hwy",
    "parkway": "pkwy", "square": "sq", "trail": "trl", "mount": "mt", "mountain": "mtn",
    "north": "n", "south": "s", "east": "e", "west": "w", "northeast": "ne",
    "northwest": "nw", "southeast": "se", "southwest": "sw", "suite": "ste",
    "apartment": "apt", "number": "no", "first": "1st", "second": "2nd", "third": "3rd",
    "fourth": "4th", "fifth": "5th", "sixth": "6th", "seventh": "7th", "eighth": "8th",
    "ninth": "9th", "tenth": "10th", "saint": "st", "fort": "ft", "expressway": "expy",
    "crescent": "cres", "point": "pt", "heights": "hts", "center": "ctr", "centre": "ctr",
}  # fmt: skip
_STREET_TYPES = frozenset(
    {"st", "ave", "rd", "dr", "blvd", "ln", "ct", "pl", "ter", "cir", "hwy", "pkwy", "sq",
     "trl", "way", "loop", "expy", "cres", "pt", "run", "row", "aly", "walk", "path"}
)  # fmt: skip
_DIRECTIONS = frozenset({"n", "s", "e", "w", "ne", "nw", "se", "sw"})
_UNIT_WORDS = frozenset({"apt", "ste", "unit", "no", "rm", "room", "fl", "floor", "bldg", "lot",
                         "flat", "shop"})


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return stripped.casefold()


def _reorder_comma_name(text: str) -> str:
    """'Smith, John' -> 'John Smith'; 'Acme, Inc.' is left alone."""
    if text.count(",") != 1:
        return text
    left, right = (p.strip() for p in text.split(","))
    right_tokens = re.sub(r"[^\w\s]", " ", _fold(right)).split()
    if not left or not right_tokens or all(t in COMPANY_SUFFIXES for t in right_tokens):
        return text
    return f"{right} {left}"


@lru_cache(maxsize=65536)
def normalise_name(text: str) -> tuple[str, ...]:
    """Name tokens: accents and case folded, '&' -> 'and', punctuation and legal suffixes gone.

    Initials such as 'J.' become 'j'.  'Smith, John' is read as 'John Smith'.  A legal form
    at the end ("Pty. Ltd.", "Ltée", "GmbH": cleanco's terms) and leading titles ("Dr",
    "Rev": nameparser's) are dropped.
    """
    text = _reorder_comma_name(unicodedata.normalize("NFKC", text).strip())
    for form in _JP_FORMS:
        text = text.replace(form, " ")
    suffix = norm.legal_suffix(text)
    if suffix and text.rstrip(",) ").endswith(suffix):
        text = text.rstrip(",) ")[: -len(suffix)].rstrip(" ,")
    words = text.split()
    while len(words) > 2 and norm.is_title(words[0]):
        words = words[1:]
    text = " ".join(words)
    folded = _fold(text).replace("&", " and ").replace("+", " and ")
    folded = re.sub("['\u2019`]", "", folded)
    folded = re.sub(r"\b([a-z])\.(?=[a-z]\.)", r"\1", folded)  # "l.l.c." -> "llc."
    tokens = re.sub(r"[^\w]+", " ", folded).replace("_", " ").split()
    kept = tuple(
        _NAME_ABBREVIATIONS.get(x, x)
        for t in tokens if t not in _NAME_DROP for x in _EXPANSIONS.get(t, (t,))
    )
    return kept or tuple(tokens)


# Place words in names are compared in the standard abbreviated form ("Road" = "Rd",
# "Mountain" = "Mtn"); one-letter forms (N, S, E, W) would read as initials.
_NAME_ABBREVIATIONS = {k: v for k, v in STREET_ABBREVIATIONS.items()
                       if len(v) >= 2 and k not in ("saint", "number", "apartment", "suite")}

_GMAIL = frozenset({"gmail.com", "googlemail.com"})


def normalise_email(email: str | None) -> str | None:
    """Lower-case; '+tag' dropped; dots ignored in the local part of Gmail addresses."""
    if not email:
        return None
    text = email.strip().lower().strip("<>").removeprefix("mailto:")
    if text.count("@") != 1:
        return None
    local, domain = text.split("@")
    local = local.split("+", 1)[0]
    if domain in _GMAIL:
        local = local.replace(".", "")
        domain = "gmail.com"
    if not local or "." not in domain:
        return None
    return f"{local}@{domain}"


def normalise_phone(phone: str | None, region: str = norm.DEFAULT_REGION) -> str | None:
    """E.164 ("+15125550101"), read with ``region`` as the default country; extension
    dropped; None if it is not a possible number (``phonenumbers``)."""
    return norm.normalise_phone(phone, region)


@dataclass(frozen=True, slots=True)
class _Addr:
    number: str | None
    street: tuple[str, ...]  # normalised street tokens, type and direction included
    core: tuple[str, ...]  # street name without type/direction
    unit: str | None
    postal: str | None
    city: str | None
    text: str  # for reasons


_UNIT_SLASH = re.compile(r"^(?:(?:unit|flat|apt|suite|ste|shop)\s*)?(\d+[a-z]?)\s*[/-]\s*"
                         r"(\d+[a-z]?)\b\s*(.*)$")
_PLAIN_US_STREET = re.compile(r"^\d+[a-z]? [a-z][a-z ]*$")


def _tokenise_street(folded: str) -> tuple[str | None, list[str], str | None]:
    """(house number, street tokens, unit) from a folded street line."""
    tokens = [STREET_ABBREVIATIONS.get(t, t) for t in re.sub(r"[^\w#]+", " ", folded).split()]
    number: str | None = None
    unit: str | None = None
    street: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if (tok in _UNIT_WORDS or tok == "#") and i + 1 < len(tokens):
            unit = tokens[i + 1].lstrip("#").lstrip("0") or "0"
            i += 2
            continue
        if tok == "#":
            i += 1
            continue
        if number is None and not street and re.fullmatch(r"\d+[a-z]?", tok):
            number = tok
        else:
            street.append(tok)
        i += 1
    return number, street, unit


def _normalise_address(address: Address | None,
                       region: str | None = None) -> _Addr | None:
    if address is None or not (address.line1 or "").strip():
        return None
    raw = " ".join(x for x in (address.line1, address.line2) if x and x.strip())
    folded = " ".join(_fold(raw).replace("#", " # ").replace(",", " ").split())
    unit_first: str | None = None
    if region != "US" and (m := _UNIT_SLASH.match(folded)):
        # "3/27 Wattle Road" (AU, NZ), "1204-33 Bay St" (CA): unit, then house number.
        unit_first, folded = m.group(1), f"{m.group(2)} {m.group(3)}"
    number, street, unit = _tokenise_street(folded)
    unit = unit or (unit_first.lstrip("0") or "0" if unit_first else None)
    core = tuple(t for t in street if t not in _STREET_TYPES and t not in _DIRECTIONS)
    if region in (None, "US") and not _PLAIN_US_STREET.match(re.sub(r"[^\w ]", "", folded)):
        parsed = norm.parse_street(raw)
        if parsed is not None and parsed.number:
            number, unit = parsed.number, parsed.unit or unit
            core = tuple(STREET_ABBREVIATIONS.get(t, t) for t in parsed.street
                         if t not in _DIRECTIONS) or core
    postal_code = norm.normalise_postcode(address.postal_code, region)
    postal = postal_code.code if postal_code else None
    city = " ".join(re.sub(r"[^\w]+", " ", _fold(address.city or "")).split()) or None
    return _Addr(number, tuple(street), core or tuple(street), unit, postal, city, raw.strip())


# --------------------------------------------------------------------------- features


@dataclass(frozen=True, slots=True)
class _NameVariant:
    raw: str
    tokens: tuple[str, ...]
    joined: str
    sorted_key: str
    given: tuple[str, ...] | None  # person reading, if the name looks like a person's
    family: str | None
    org: bool


@dataclass(slots=True)
class _Features:
    names: list[_NameVariant] = field(default_factory=list)
    generation: str | None = None  # "jr", "sr", "ii", "iii", ...
    email: str | None = None
    email_raw: str | None = None
    org_domain: str | None = None
    phone: str | None = None
    phone_raw: str | None = None
    phone_national: str | None = None  # digits as written, if written without a country
    address: _Addr | None = None
    org: bool = False


def _variant(raw: str, given: str | None = None, family: str | None = None) -> _NameVariant | None:
    tokens = normalise_name(raw)
    if not tokens:
        return None
    org = (any(t in _ORG_WORDS for t in tokens) or any(
        t in COMPANY_SUFFIXES for t in re.sub(r"[^\w]+", " ", _fold(raw)).split()
    ) or norm.legal_suffix(raw) is not None)
    g: tuple[str, ...] | None = None
    f: str | None = None
    if given is not None or family is not None:
        g = normalise_name(given) if given else ()
        fam = normalise_name(family) if family else ()
        f = " ".join(fam) if fam else None
        org = False
    elif not org and 2 <= len(tokens) <= 4:
        g, f = tokens[:-1], tokens[-1]
    return _NameVariant(raw, tokens, " ".join(tokens), " ".join(sorted(tokens)), g, f, org)


def _features(rec: CustomerLike, default_region: str | None = None) -> _Features:
    feats = _Features()
    seen: set[str] = set()

    def add(v: _NameVariant | None) -> None:
        if v is not None and (v.sorted_key, v.given, v.family) not in {
            (n.sorted_key, n.given, n.family) for n in feats.names
        }:
            feats.names.append(v)
            seen.add(v.sorted_key)

    add(_variant(rec.display_name or ""))
    if rec.company_name:
        add(_variant(rec.company_name))
    given, family = (rec.given_name or "").strip(), (rec.family_name or "").strip()
    if given or family:
        add(_variant(f"{given} {family}".strip(), given or None, family or None))
    feats.org = any(v.org for v in feats.names) or bool(rec.company_name)
    feats.generation = norm.generation_suffix(rec.display_name or "")
    feats.email = normalise_email(rec.email)
    feats.email_raw = (rec.email or "").strip() or None
    if feats.email:
        domain = feats.email.split("@")[1]
        if domain not in FREE_MAIL_DOMAINS:
            feats.org_domain = domain
    addr = rec.address
    region = norm.region_for(addr.country if addr else None,
                             addr.postal_code if addr else None, default_region)
    feats.phone = norm.normalise_phone(rec.phone, region)
    feats.phone_raw = (rec.phone or "").strip() or None
    if feats.phone and feats.phone_raw and not re.match(r"^\s*(\+|00|011)", feats.phone_raw):
        feats.phone_national = re.sub(r"\D", "", re.split(
            r"(?i)\s*(?:ext\.?|extn\.?|x|#)\s*\d+\s*$", feats.phone_raw)[0])
    feats.address = _normalise_address(addr, region)
    return feats


# --------------------------------------------------------------------------- name evidence


def _canon_given(token: str) -> str:
    return NICKNAMES.get(token, token)


def _is_initials(tokens: tuple[str, ...]) -> bool:
    return bool(tokens) and all(len(t) == 1 for t in tokens)


def _ratio(a: str, b: str) -> float:
    return float(Indel.normalized_similarity(a, b) * 100.0)


def _diminutive_of(a: str, b: str) -> bool:
    """'Lachie' for 'Lachlan', 'Katie' for 'Katherine': the shorter ends in a diminutive
    ending and what precedes it (3+ letters) starts the longer."""
    short, long_ = sorted((a, b), key=len)
    for ending in ("ie", "y", "ee"):
        stem = short.removesuffix(ending)
        if stem != short and len(stem) >= 3 and long_.startswith(stem) and long_ != short:
            return True
    return False


def _given_evidence(
    a: _NameVariant, b: _NameVariant, ga: tuple[str, ...], gb: tuple[str, ...]
) -> tuple[float, str]:
    qa, qb = f"'{a.raw}'", f"'{b.raw}'"
    if not ga or not gb:
        return W_NAME_FAMILY_ONLY, f"same family name and no given name on one side ({qa}, {qb})"
    if ga == gb:
        return W_NAME_EXACT, f"name {qa} matches {qb}"
    if _is_initials(ga) or _is_initials(gb):
        short, long_ = (ga, gb) if _is_initials(ga) else (gb, ga)
        if all(i < len(long_) and long_[i][0] == s for i, s in enumerate(short)):
            return W_NAME_INITIAL, f"name {qa} matches {qb} by initial"
        return W_NAME_GIVEN_CONFLICT, f"initials differ ({qa} vs {qb})"
    fa, fb = ga[0], gb[0]
    if fa == fb:
        return W_NAME_TYPO, f"name {qa} matches {qb} on the first given name"
    if _canon_given(fa) == _canon_given(fb):
        return W_NAME_NICKNAME, f"name {qa} matches {qb} (nickname)"
    sim = _ratio(" ".join(ga), " ".join(gb))
    first_sim = _ratio(fa, fb)
    if sim >= 84 or first_sim >= 84:
        return W_NAME_TYPO, f"name {qa} is close to {qb} (similarity {max(sim, first_sim):.0f})"
    if fa.startswith(fb) or fb.startswith(fa) or _diminutive_of(fa, fb):
        return W_NAME_NICKNAME, f"given name {qa} looks like a short form of {qb}"
    return W_NAME_GIVEN_CONFLICT, f"different given names ({qa} vs {qb})"


def _readings(v: _NameVariant) -> list[tuple[tuple[str, ...], str]]:
    """(given, family) readings: as written, and family-name-first (e.g. Japanese names)."""
    assert v.given is not None and v.family is not None
    out: list[tuple[tuple[str, ...], str]] = [(v.given, v.family)]
    if len(v.given) == 1 and len(v.given[0]) > 1:
        out.append(((v.family,), v.given[0]))
    return out


def _person_evidence(a: _NameVariant, b: _NameVariant) -> tuple[float, str] | None:
    if a.family is None or b.family is None or a.given is None or b.given is None:
        return None
    best: tuple[float, str] | None = None
    for ia, (ga, fa) in enumerate(_readings(a)):
        for ib, (gb, fb) in enumerate(_readings(b)):
            if ia and ib:
                continue  # both swapped is the straight comparison again, less reliable
            fam_sim = 100.0 if fa == fb else _ratio(fa, fb)
            if fam_sim < 85:
                continue
            weight, text = _given_evidence(a, b, ga, gb)
            if (ia or ib) and weight <= 0:
                continue  # a swapped reading may support a match, never refute one
            if fam_sim < 100 and weight > 0:
                weight = min(weight, W_NAME_TYPO)
                text = f"{text}; family names differ slightly"
            if best is None or weight > best[0]:
                best = (weight, text)
    return best


def _org_evidence(a: _NameVariant, b: _NameVariant) -> tuple[float, str]:
    qa, qb = f"'{a.raw}'", f"'{b.raw}'"
    ts = float(fuzz.token_sort_ratio(a.joined, b.joined))
    tset = float(fuzz.token_set_ratio(a.joined, b.joined))
    set_a, set_b = set(a.tokens), set(b.tokens)
    only_a = [t for t in dict.fromkeys(a.tokens) if t not in set_b]
    only_b = [t for t in dict.fromkeys(b.tokens) if t not in set_a]
    shared = sorted(set_a & set_b)
    if only_a and only_b:
        left, right = " ".join(sorted(only_a)), " ".join(sorted(only_b))
        glued = _ratio("".join(only_a), "".join(only_b))
        if max(_ratio(left, right), glued) < 70 and shared:
            return W_NAME_TOKEN_CONFLICT, f"names share {shared[0]!r} yet differ: {qa} vs {qb}"
    if ts >= 92:
        return W_NAME_FUZZY_HIGH, f"name {qa} is close to {qb} (similarity {ts:.0f})"
    if ts >= 85:
        return W_NAME_FUZZY_MID, f"name {qa} resembles {qb} (similarity {ts:.0f})"
    if tset >= 99 and len(shared) >= 2:
        return W_NAME_CONTAINED, f"name {qa} is contained in {qb}"
    if ts >= 75:
        return W_NAME_WEAK, f"name {qa} is somewhat like {qb} (similarity {ts:.0f})"
    if max(ts, tset) < 60:
        return W_NAME_DIFFERENT, f"names differ ({qa} vs {qb})"
    return 0.0, f"names only loosely alike ({qa} vs {qb})"


@lru_cache(maxsize=65536)
def _script(text: str) -> str:
    """'latin' or 'other': names in different scripts cannot be compared letter by letter."""
    return "other" if any(ch.isalpha() and ord(ch) > 0x24F for ch in text) else "latin"


def _pair_name_evidence(a: _NameVariant, b: _NameVariant) -> tuple[float, str]:
    if _script(a.joined) != _script(b.joined):
        return 0.0, f"names in different scripts, not compared ('{a.raw}', '{b.raw}')"
    if a.sorted_key == b.sorted_key or a.joined.replace(" ", "") == b.joined.replace(" ", ""):
        if a.raw.strip() == b.raw.strip():
            return W_NAME_EXACT, f"same name '{a.raw.strip()}'"
        return W_NAME_EXACT, f"name '{a.raw}' matches '{b.raw}'"
    person = _person_evidence(a, b)
    if person is not None:
        return person
    return _org_evidence(a, b)


def _name_evidence(fa: _Features, fb: _Features) -> tuple[float, str] | None:
    best: tuple[float, str] | None = None
    for va in fa.names:
        for vb in fb.names:
            ev = _pair_name_evidence(va, vb)
            if best is None or ev[0] > best[0] or (ev[0] == best[0] and ev[1] < best[1]):
                best = ev
    return best


# --------------------------------------------------------------------------- pair scoring


def _format_phone(e164: str) -> str:
    return norm.format_phone(e164)


@dataclass(frozen=True, slots=True)
class _Scored:
    score: float
    reasons: tuple[str, ...]
    others: tuple[str, ...]  # positive evidence other than the name
    contradicted: bool  # any evidence against (different e-mail, phone, address, ...)


def _score(fa: _Features, fb: _Features) -> tuple[float, tuple[str, ...]]:
    scored = _score_parts(fa, fb)
    return scored.score, scored.reasons


def _score_parts(fa: _Features, fb: _Features) -> _Scored:
    total = PRIOR
    positives: list[tuple[float, str]] = []
    negatives: list[tuple[float, str]] = []

    def note(weight: float, text: str) -> None:
        nonlocal total
        total += weight
        (positives if weight > 0 else negatives).append((weight, text))

    if fa.email and fb.email:
        if fa.email == fb.email:
            shown = fa.email_raw if fa.email_raw and fa.email_raw.lower() == (
                fb.email_raw or "").lower() else fa.email
            note(W_EMAIL_SAME, f"same e-mail {shown}")
        else:
            note(W_EMAIL_DIFFERENT, "different e-mail addresses")
            if fa.org and fb.org and fa.org_domain and fa.org_domain == fb.org_domain:
                note(W_DOMAIN_SAME_ORG, f"same company e-mail domain {fa.org_domain}")
    if fa.phone and fb.phone:
        if fa.phone == fb.phone:
            note(W_PHONE_SAME, f"same phone {_format_phone(fa.phone)}")
        elif fa.phone_national and fa.phone_national == fb.phone_national:
            # The same digits written the national way, read in two regions (one record's
            # address says where it is, the other has none): one number in one company's book.
            note(W_PHONE_SAME, f"same phone {fa.phone_raw}")
        else:
            note(W_PHONE_DIFFERENT, "different phone numbers")
    aa, ab = fa.address, fb.address
    if aa and ab:
        same_street = aa.number == ab.number and (
            aa.core == ab.core or _ratio(" ".join(aa.street), " ".join(ab.street)) >= 90
        )
        postal_conflict = bool(aa.postal and ab.postal and aa.postal != ab.postal)
        if same_street and not postal_conflict:
            if aa.unit and ab.unit and aa.unit != ab.unit:
                units = f"{aa.unit} vs {ab.unit}"
                note(W_UNIT_DIFFERENT, f"same building but different units ({units})")
            else:
                note(W_ADDRESS_SAME, f"same address {aa.text}")
        else:
            note(W_ADDRESS_DIFFERENT, "different addresses")
            if aa.postal and aa.postal == ab.postal:
                note(W_POSTAL_SAME, f"same postal code {aa.postal}")
    others = tuple(t for _, t in positives)
    name = _name_evidence(fa, fb)
    if name is not None:
        note(*name)
    if fa.generation and fb.generation and fa.generation != fb.generation:
        note(W_GENERATION_DIFFERENT, f"generational suffixes differ ({fa.generation} vs "
             f"{fb.generation}): likely parent and child")

    score = 1.0 / (1.0 + math.exp(-total))
    positives.sort(key=lambda p: (-p[0], p[1]))
    negatives.sort(key=lambda p: (p[0], p[1]))
    reasons = [t for _, t in positives] + [f"but {t}" for _, t in negatives]
    return _Scored(score, tuple(reasons), others, bool(negatives))


def _shown_given(token: str) -> str:
    return f"{token.upper()}." if len(token) == 1 else token[:1].upper() + token[1:]


def _possible_link(fa: _Features, fb: _Features) -> str | None:
    """The name-only link of a possible duplicate: identical surname and a first name that
    could be the same person's (its initial, or a nickname from ``NICKNAMES``), or None.

    Uses the likely tier's own name rules (``_given_evidence``) so the two never disagree."""
    for va in fa.names:
        for vb in fb.names:
            if va.given is None or vb.given is None or va.family is None or vb.family is None:
                continue
            for ia, (ga, fam_a) in enumerate(_readings(va)):
                for ib, (gb, fam_b) in enumerate(_readings(vb)):
                    if (ia and ib) or fam_a != fam_b or not ga or not gb:
                        continue
                    weight, _ = _given_evidence(va, vb, ga, gb)
                    nickname = _canon_given(ga[0]) == _canon_given(gb[0])
                    if not (weight == W_NAME_INITIAL or (weight == W_NAME_NICKNAME
                                                         and nickname)):
                        continue
                    a, b = " ".join(map(_shown_given, ga)), " ".join(map(_shown_given, gb))
                    if _is_initials(gb) or (not _is_initials(ga) and len(a) > len(b)):
                        a, b = b, a  # the shorter form first: 'J.' could be 'John'
                    return (f"same surname '{_shown_given(fam_a)}', first name '{a}' could be "
                            f"'{b}'")
    return None


def _match(i: int, existing_id: str, cf: _Features, ef: _Features,
           threshold: float) -> DuplicateMatch | None:
    scored = _score_parts(cf, ef)
    if scored.score >= threshold:
        return DuplicateMatch(i, existing_id, round(scored.score, 4), scored.reasons)
    if scored.contradicted or scored.others:
        return None  # possible means name only: nothing else for or against
    link = _possible_link(cf, ef)
    if link is None:
        return None
    return DuplicateMatch(i, existing_id, round(scored.score, 4),
                          (f"{link} — nothing else in common",), "possible")


def _ranked(found: list[DuplicateMatch], limit: int | None) -> list[DuplicateMatch]:
    """Likely matches first, then possible ones; within a tier by descending score."""
    found.sort(key=lambda m: (TIERS.index(m.tier), -m.score, m.existing_id))
    return found if limit is None else found[:limit]


def score_pair(a: CustomerLike, b: CustomerLike, *,
               default_region: str | None = None) -> tuple[float, tuple[str, ...]]:
    """Probability-like score in (0, 1) that ``a`` and ``b`` are the same customer, and why.

    ``default_region`` is the company's country (ISO alpha-2) for phone numbers and
    postcodes written without one; a record's own address country wins."""
    return _score(_features(a, default_region), _features(b, default_region))


# --------------------------------------------------------------------------- blocking


def _deletions(token: str) -> Iterable[str]:
    yield token
    if len(token) >= 4:
        for i in range(len(token)):
            yield token[:i] + token[i + 1 :]


def _strong_keys(f: _Features) -> set[str]:
    keys: set[str] = set()
    if f.email:
        keys.add("e:" + f.email)
    if f.phone:
        keys.add("p:" + f.phone)
    if f.phone_national:
        keys.add("n:" + f.phone_national)
    if f.address and f.address.number and f.address.core:
        keys.add(f"a:{f.address.number} {f.address.core[0]}")
    for v in f.names:
        keys.add("f:" + v.sorted_key)
    return keys


def _name_keys(f: _Features) -> set[str]:
    keys: set[str] = set()
    for v in f.names:
        for t in v.tokens:
            if len(t) >= 3 or (len(t) >= 2 and not t.isascii()):
                keys.update("d:" + d for d in _deletions(t))
    return keys


def _person_keys(f: _Features) -> tuple[set[str], set[str]]:
    """(keys to index a record under, keys to look a record up by) for possible matches.

    ``_possible_link`` pairs an initial with a full first name or another initial of the
    same letter ("I"/"F" + surname + letter), and two full first names with the same
    canonical nickname ("N" + surname + name), so every pair it accepts meets under one
    key while full names with merely the same first letter (John, Jim) do not."""
    index: set[str] = set()
    query: set[str] = set()
    for v in f.names:
        if v.given is None or v.family is None:
            continue
        for given, family in _readings(v):
            if not given:
                continue
            letter = f"{family}:{given[0][0]}"
            if _is_initials(given):
                index.add(f"I:{letter}")
                query.update((f"I:{letter}", f"F:{letter}"))
            else:
                nick = f"N:{family}:{_canon_given(given[0])}"
                index.update((f"F:{letter}", nick))
                query.update((f"I:{letter}", nick))
    return index, query


def _prefilter_text(f: _Features) -> list[str]:
    return [v.joined for v in f.names]


def find_duplicates(
    candidates: Sequence[ImportCandidate],
    existing: Sequence[ExistingCustomer],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    max_per_candidate: int | None = 5,
    default_region: str | None = None,
) -> list[DuplicateMatch]:
    """Likely matches of import rows against existing customers (score >= ``threshold``),
    then possible ones (name only, see the module docstring), each with its ``tier``.

    Sorted by candidate index, then likely before possible, then by descending score.  At
    most ``max_per_candidate`` matches are kept per candidate (None for all).
    ``default_region`` is the company's country (ISO alpha-2, e.g. "GB"): phone numbers and
    postcodes written without a country are read in it (a record's own address country,
    or a postcode whose shape names its country, wins); None reads them as US.
    """
    ex_feats = [_features(e, default_region) for e in existing]
    strong: dict[str, list[int]] = defaultdict(list)
    by_name: dict[str, list[int]] = defaultdict(list)
    by_person: dict[str, list[int]] = defaultdict(list)
    for j, f in enumerate(ex_feats):
        for k in _strong_keys(f):
            strong[k].append(j)
        for k in _name_keys(f):
            by_name[k].append(j)
        for k in _person_keys(f)[0]:
            by_person[k].append(j)
    name_cap = max(MAX_NAME_BLOCK, len(existing) // 10)

    matches: list[DuplicateMatch] = []
    for i, cand in enumerate(candidates):
        cf = _features(cand, default_region)
        pool: set[int] = set()
        for k in _strong_keys(cf):
            pool.update(strong.get(k, ()))
        for k in _person_keys(cf)[1]:
            block = by_person.get(k)
            if block and len(block) <= name_cap:
                pool.update(block)
        name_pool: set[int] = set()
        for k in _name_keys(cf):
            block = by_name.get(k)
            if block and len(block) <= name_cap:
                name_pool.update(block)
        name_pool -= pool
        if name_pool:
            idx = list(name_pool)
            choices = ["|".join(_prefilter_text(ex_feats[j])) for j in idx]
            for text in _prefilter_text(cf):
                for _, _, pos in process.extract(
                    text, choices, scorer=fuzz.token_set_ratio, limit=None,
                    score_cutoff=NAME_PREFILTER_CUTOFF, processor=lambda s: s.replace("|", " "),
                ):
                    pool.add(idx[pos])
        found = [m for j in pool if (m := _match(i, existing[j].id, cf, ex_feats[j],
                                                 threshold)) is not None]
        matches.extend(_ranked(found, max_per_candidate))
    return matches


def find_duplicates_all_pairs(
    candidates: Sequence[ImportCandidate],
    existing: Sequence[ExistingCustomer],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    max_per_candidate: int | None = 5,
    default_region: str | None = None,
) -> list[DuplicateMatch]:
    """Reference implementation without blocking: scores every pair (slow; for tests/bench)."""
    ex_feats = [_features(e, default_region) for e in existing]
    matches: list[DuplicateMatch] = []
    for i, cand in enumerate(candidates):
        cf = _features(cand, default_region)
        found = [m for j, ef in enumerate(ex_feats)
                 if (m := _match(i, existing[j].id, cf, ef, threshold)) is not None]
        matches.extend(_ranked(found, max_per_candidate))
    return matches
