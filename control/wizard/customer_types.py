"""Suggest a BlueClerk customer type (Homeowner, Business, Builder) for an imported record.

The suggestion is a transparent score: every signal found in the record adds a
weight to one or more of the three types, and every signal is recorded as a human
sentence.  One signal comes from a trained model: ``probablepeople``, a conditional
random field trained to tag a name as a person, a household or a corporation, runs
offline on the name ("name tagged as a household by the name model").  Legal forms
come from ``cleanco``'s terms for many countries (Ltd, Pty Ltd, GmbH, Inc...), titles
from ``nameparser``'s list; trade and business words from the lists below.  The type
with the highest score wins; the confidence is a softmax over the three scores, so it is
always in [0, 1] and
is low when the evidence is thin or contradictory.

The weights were set by hand and checked against the development set
(``tests/data/labelled_customers.csv`` and ``labelled_customers_intl_dev.csv``); the
held-out set is only measured (see ``bench/wizard_quality.py``).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from control.wizard import normalise as norm
from control.wizard import trades
from schemas.records import Address, Customer

__all__ = [
    "CUSTOMER_TYPES",
    "CustomerType",
    "ImportCandidate",
    "TypeSuggestion",
    "suggest_customer_type",
]

CustomerType = Literal["Homeowner", "Business", "Builder"]
CUSTOMER_TYPES: tuple[CustomerType, ...] = ("Homeowner", "Business", "Builder")


@dataclass(frozen=True, slots=True)
class ImportCandidate:
    """One customer row from an import file, before it becomes a BlueClerk Customer."""

    display_name: str
    given_name: str | None = None
    family_name: str | None = None
    company_name: str | None = None
    email: str | None = None
    phone: str | None = None
    address: Address | None = None
    notes: str | None = None

    @classmethod
    def from_customer(cls, customer: Customer, notes: str | None = None) -> ImportCandidate:
        return cls(
            display_name=customer.display_name,
            given_name=customer.given_name,
            family_name=customer.family_name,
            company_name=customer.company_name,
            email=customer.email,
            phone=customer.phone,
            address=customer.billing_address,
            notes=notes,
        )


@dataclass(frozen=True, slots=True)
class TypeSuggestion:
    customer_type: CustomerType
    confidence: float
    reasons: tuple[str, ...]


# --------------------------------------------------------------------------- vocabulary

FREE_MAIL_DOMAINS = frozenset(
    {
        "gmail.com", "googlemail.com", "yahoo.com", "yahoo.co.uk", "yahoo.co.jp", "ymail.com",
        "rocketmail.com", "outlook.com", "hotmail.com", "hotmail.co.uk", "live.com", "msn.com",
        "icloud.com", "me.com", "mac.com", "aol.com", "protonmail.com", "proton.me",
        "gmx.com", "gmx.net", "mail.com", "zoho.com", "comcast.net", "verizon.net",
        "att.net", "sbcglobal.net", "bellsouth.net", "cox.net", "charter.net", "earthlink.net",
        "optonline.net", "frontier.com", "windstream.net", "shaw.ca", "rogers.com",
        "sympatico.ca", "btinternet.com", "docomo.ne.jp", "ezweb.ne.jp", "fastmail.com",
        "hey.com", "qq.com", "163.com", "naver.com",
        # the main consumer ISPs' mailboxes in the UK, Australia, New Zealand and Canada
        "sky.com", "virginmedia.com", "talktalk.net", "ntlworld.com", "blueyonder.co.uk",
        "aol.co.uk", "live.co.uk", "outlook.co.uk", "bigpond.com", "bigpond.net.au",
        "optusnet.com.au", "iinet.net.au", "tpg.com.au", "internode.on.net", "westnet.com.au",
        "dodo.com.au", "xtra.co.nz", "clear.net.nz", "slingshot.co.nz", "orcon.net.nz",
        "vodafone.co.nz", "outlook.co.nz", "videotron.ca", "eastlink.ca", "telus.net",
        "bell.net", "cogeco.ca", "sasktel.net",
    }
)  # fmt: skip

# Legal-form suffixes: evidence of an organisation (Business or Builder).
COMPANY_SUFFIXES = frozenset(
    {
        "llc", "l.l.c", "inc", "incorporated", "ltd", "limited", "corp", "corporation",
        "co", "company", "pllc", "llp", "lp", "plc", "pc", "gmbh", "kk", "pty", "lc",
    }
)  # fmt: skip

# Construction-trade words.  Multi-word phrases are matched on the normalised text.
BUILDER_TERMS: dict[str, float] = {
    "construction": 3.0, "constructors": 3.0, "builders": 3.0, "builder": 3.0,
    "homebuilders": 3.0, "homebuilder": 3.0, "homes": 2.2, "contracting": 3.0,
    "contractors": 2.6, "contractor": 2.6, "general contractor": 3.5, "gc": 2.2,
    "remodeling": 3.0, "remodelling": 3.0, "remodel": 2.5, "development": 2.4,
    "developers": 2.4, "developments": 2.4, "renovations": 3.0, "renovation": 3.0,
    "roofing": 2.8, "framing": 2.8, "concrete": 2.4, "excavation": 2.6, "excavating": 2.6,
    "drywall": 2.6, "masonry": 2.6, "carpentry": 2.4, "custom homes": 3.5,
    "design build": 3.2, "design-build": 3.2, "build": 1.8, "building": 1.6,
    "restoration": 1.4, "structures": 1.8, "sitework": 2.6, "paving": 2.0,
    "developer": 2.0, "new construction": 2.5, "spec homes": 2.5, "spec home": 2.5,
    "subdivision": 2.0, "tract": 1.2, "constructions": 3.0, "groundworks": 3.0,
    "loft conversions": 3.2, "conversions": 1.6, "scaffolding": 2.6, "joinery": 2.4,
    "tiling": 2.0, "concreting": 2.4, "kensetsu": 3.0, "komuten": 3.0, "koumuten": 3.0,
    "plumbing": 1.8, "electric": 1.8, "electrical": 1.9, "hvac": 1.8, "mechanical": 1.8,
    "heating": 1.4, "insulation": 2.0, "siding": 2.0, "flooring": 1.8, "tile": 1.2,
    "painting": 1.2, "cabinets": 1.6, "cabinetry": 1.6, "glazing": 2.0, "welding": 1.6,
    "建設": 3.0, "工務店": 3.0, "建築": 2.8, "住宅": 2.0,
}  # fmt: skip

# Non-construction business words.
BUSINESS_TERMS: dict[str, float] = {
    "restaurant": 3.0, "cafe": 2.6, "café": 2.6, "grill": 2.4, "bistro": 2.6, "diner": 2.4,
    "bakery": 2.6, "pizza": 2.4, "pizzeria": 2.6, "taqueria": 2.6, "sushi": 2.2, "bar": 1.4,
    "brewing": 2.6, "brewery": 2.6, "coffee": 2.0, "kitchen": 1.0,
    "property management": 3.5, "properties": 2.2, "property": 1.6, "management": 1.8,
    "realty": 2.8, "real estate": 2.8, "apartments": 2.6, "apartment": 2.0, "condominium": 2.6,
    "condominiums": 2.6, "condo": 1.8, "hoa": 2.8, "homeowners association": 3.5,
    "owners association": 3.0, "association": 2.2, "dental": 3.0, "dentistry": 3.0,
    "orthodontics": 3.0, "clinic": 2.8, "medical": 2.8, "health": 2.0, "hospital": 3.0,
    "pharmacy": 3.0, "veterinary": 3.0, "animal hospital": 3.0, "church": 2.8,
    "school": 2.6, "academy": 2.4, "daycare": 2.6, "university": 3.0, "college": 2.6,
    "hotel": 2.8, "inn": 2.0, "motel": 2.8, "salon": 2.6, "spa": 2.0, "barbershop": 2.6,
    "market": 2.2, "grocery": 2.6, "store": 2.2, "shop": 1.8, "boutique": 2.4,
    "auto": 2.0, "motors": 2.4, "automotive": 2.6, "tire": 1.8, "car wash": 2.6,
    "law": 2.2, "law office": 3.0, "attorneys": 2.8, "associates": 1.8, "insurance": 2.8,
    "bank": 2.6, "credit union": 3.0, "accounting": 2.6, "cpa": 2.6, "office": 1.4,
    "offices": 1.6, "plaza": 2.2, "center": 1.8, "centre": 1.8, "group": 1.6,
    "holdings": 2.2, "partners": 1.8, "enterprises": 2.0, "services": 1.4,
    "foods": 2.4, "farms": 1.6, "storage": 2.4, "self storage": 3.0, "laundromat": 2.8,
    "fitness": 2.6, "gym": 2.6, "studio": 1.8, "gallery": 2.0, "theater": 2.4,
    "theatre": 2.4, "museum": 2.8, "library": 2.8, "city of": 3.0, "county": 2.4,
    "district": 2.0, "warehouse": 2.4, "logistics": 2.8, "manufacturing": 2.8,
    "industries": 2.6, "labs": 2.2, "laboratories": 2.6, "foundation": 2.0,
    "ministries": 2.6, "temple": 2.4, "mosque": 2.6, "synagogue": 2.6, "nursing": 2.4,
    "senior living": 3.0, "assisted living": 3.0, "veterans": 1.6, "club": 1.8,
    "country club": 3.0, "golf": 2.0, "marina": 2.4, "rentals": 2.2, "leasing": 2.4,
    "investments": 2.0, "capital": 1.8, "trust": 0.8, "estate": 0.6,
    "病院": 3.0, "歯科": 3.0, "医院": 3.0, "レストラン": 3.0,
    "食堂": 2.6, "不動産": 2.8, "ホテル": 2.8,
    "owners corporation": 3.5, "strata": 3.0, "strata plan": 3.5, "body corporate": 3.5,
    "lettings": 2.8, "letting agent": 3.0, "housing association": 3.5, "surgery": 2.2,
    "depanneur": 3.0, "copropriete": 3.0, "syndicat": 2.2, "pub": 2.2,
}  # fmt: skip

# Business words that name another trade in the plural: "Kitchens" in a trading name
# is a kitchen fitter or showroom ("Ashdown Kitchens & Bathrooms", "Hills Kitchens &
# Joinery"); only "Kitchen" names a food business ("Midtown Kitchen").
SINGULAR_ONLY = frozenset({"kitchen"})

# Role mailboxes are used by organisations, rarely by households.
ROLE_MAILBOXES = frozenset(
    {
        "info", "office", "accounts", "accounting", "billing", "admin", "sales", "contact",
        "ap", "payables", "invoices", "frontdesk", "reception", "manager", "management",
        "service", "maintenance", "facilities", "hello", "team", "orders", "purchasing",
        "estimating", "bids", "projects", "operations", "ops",
    }
)  # fmt: skip

HOMEOWNER_NOTE_TERMS: dict[str, float] = {
    "homeowner": 2.5, "home owner": 2.5, "my house": 2.0, "our house": 2.0, "residence": 1.5,
    "residential": 1.2, "wife": 1.2, "husband": 1.2, "retired": 1.2, "my home": 2.0,
    "primary home": 1.5, "vacation home": 1.2, "cabin": 1.0, "dog": 0.6, "gate code": 0.8,
    "basement": 0.6, "garage": 0.4, "kids": 1.0, "mother": 1.0, "father": 1.0, "tenant": 0.4,
}  # fmt: skip

COMMERCIAL_ADDRESS_TERMS = (
    "suite", "ste", "floor", "fl", "industrial", "business park", "commerce", "corporate",
    "parkway", "pkwy", "plaza", "mall", "tower", "building", "bldg", "office park", "hwy",
    "highway", "dock",
)  # fmt: skip
RESIDENTIAL_ADDRESS_TERMS = (
    "lane", "ln", "court", "ct", "circle", "cir", "drive", "dr", "terrace", "ter",
    "trail", "trl", "place", "pl", "way", "cove", "hollow", "ridge", "loop", "path",
    "apt", "apartment", "unit", "lot",
)  # fmt: skip

# Honorifics mark a person.
HONORIFICS = frozenset({"mr", "mrs", "ms", "miss", "dr", "mx", "sr", "jr", "ii", "iii", "san"})

# Weights of the name model's (probablepeople) tag.
MODEL_PERSON = 1.2
MODEL_HOUSEHOLD = 2.0
MODEL_CORPORATION = 1.0

# A trade word from the public classifications (``trade_vocabulary.tsv``): as strong as
# the hand-written list's middle weights. A name that names a trade is also a trading
# name (an organisation, even a sole trader's), whatever the name model says.
TRADE_WORD = 2.4
TRADE_NAME_ORG = 0.8
TRADE_IN_EMAIL = 1.6
# "& Sons", "and Sons", "& Fils", "Bros": a family firm, an organisation of either kind.
FAMILY_FIRM = re.compile(r"(?i)(?:&|\band|\bet)\s+(?:sons|son|fils|daughters)\b|\bbros\b\.?"
                         r"|\bbrothers\b|\bfreres\b|\bfrères\b")
FAMILY_FIRM_WEIGHT = 1.5
# Set on the development set (its four family-firm names are all builders); weaker than
# any trade or business word, so it only decides between two organisation readings.
FAMILY_FIRM_TRADE = 0.5

PRIOR: dict[CustomerType, float] = {"Homeowner": 0.6, "Business": 0.0, "Builder": -0.3}
SOFTMAX_TEMPERATURE = 1.6


# --------------------------------------------------------------------------- helpers


def _fold(text: str) -> str:
    """Casefold and strip accents, keeping CJK characters and word punctuation as spaces."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    stripped = stripped.casefold().replace("&", " and ").replace("'", "").replace("\u2019", "")
    return " ".join(re.sub(r"[^\w\-]+", " ", stripped).split())


def _tokens(text: str) -> list[str]:
    return [t.strip("-") for t in text.replace(".", "").split() if t.strip("-")]


def _stems(word: str) -> list[str]:
    """The word and its plain forms: 'roofs' -> 'roof', 'tiling' -> 'tile', 'tiler'."""
    out = [word]
    if len(word) > 4 and word.endswith("s") and not word.endswith("ss"):
        out.append(word[:-1])
    for ending in ("ing", "ers", "er"):
        if len(word) > len(ending) + 3 and word.endswith(ending):
            stem = word[: -len(ending)]
            out += [stem, stem + "e", stem + "ing"]
    return out


def _phrase_hits(text: str, vocabulary: dict[str, float]) -> list[tuple[str, float]]:
    """Vocabulary entries present in ``text`` as whole words (or as substrings for CJK);
    a single word also matches through its plain form ('Tilers' finds 'tiling'), except
    the words of ``SINGULAR_ONLY``."""
    hits: list[tuple[str, float]] = []
    padded = f" {text} "
    variants = {v for w in text.split() for v in _stems(w)}
    for term, weight in vocabulary.items():
        if term.isascii():
            loose = " " not in term and term not in SINGULAR_ONLY and term in variants
            if f" {term} " in padded or loose:
                hits.append((term, weight))
        elif term in text:
            hits.append((term, weight))
    # Drop single words already covered by a matched phrase ("homes" inside "custom homes").
    phrases = [t for t, _ in hits if " " in t]
    return [(t, w) for t, w in hits if " " in t or not any(t in p.split() for p in phrases)]


def _domain_hits(label: str, vocabulary: dict[str, float]) -> list[tuple[str, float]]:
    """Vocabulary words embedded in a domain label such as ``smithconstruction``."""
    hits: list[tuple[str, float]] = []
    for term, weight in vocabulary.items():
        word = term.replace(" ", "").replace("-", "")
        if len(word) >= 5 and word.isascii() and word in label:
            if term in SINGULAR_ONLY and label.replace(word + "s", "").find(word) < 0:
                continue  # only in its plural form ("hillskitchens")
            hits.append((term, weight))
    return hits


def _has_cjk(text: str) -> bool:
    return any("\u3040" <= ch <= "\u30ff" or "\u4e00" <= ch <= "\u9fff" for ch in text)


class _Scorer:
    def __init__(self) -> None:
        self.scores: dict[CustomerType, float] = dict(PRIOR)
        self.evidence: dict[CustomerType, list[tuple[float, str]]] = {
            t: [] for t in CUSTOMER_TYPES
        }
        # Homeowner weight that only says "this is a person's name" (a sole trader's too).
        self.person_name = 0.0
        self.trade_in_email: str | None = None

    def person(self, weight: float, reason: str) -> None:
        self.add(("Homeowner",), weight, reason)
        self.person_name += weight

    def add(self, types: Iterable[CustomerType], weight: float, reason: str) -> None:
        for t in types:
            self.scores[t] += weight
            self.evidence[t].append((weight, reason))


_ORG: tuple[CustomerType, ...] = ("Business", "Builder")


def _score_names(c: ImportCandidate, s: _Scorer) -> None:
    company = (c.company_name or "").strip()
    display = (c.display_name or "").strip()
    # The same name in both fields is one piece of evidence, not two.
    same = _fold(company) == _fold(display)
    org_text = " ".join(x for x in (company, "" if same else display) if x)
    folded = _fold(org_text)
    words = _tokens(folded)

    suffixes = [w for w in words if w in COMPANY_SUFFIXES]
    legal = next((f for f in (norm.legal_suffix(company), norm.legal_suffix(display)) if f),
                 None)
    if legal:
        s.add(_ORG, 2.5, f"company legal form '{legal}'")
        suffixes = suffixes or [legal]
    elif suffixes:
        raw = next(
            (t for t in re.split(r"[\s,]+", org_text) if _fold(t).replace(".", "") in suffixes),
            suffixes[0],
        )
        s.add(_ORG, 2.5, f"company suffix '{raw.strip(',')}'")
    if "株式会社" in org_text or "有限会社" in org_text:
        s.add(_ORG, 2.5, "Japanese company form (株式会社/有限会社)")

    builder_hits = _phrase_hits(folded, BUILDER_TERMS)
    business_hits = _phrase_hits(folded, BUSINESS_TERMS)
    for term, weight in builder_hits:
        s.add(("Builder",), weight, f"construction word '{term}' in the name")
    for term, weight in business_hits:
        s.add(("Business",), weight, f"business word '{term}' in the name")
    tag = norm.tag_name(display) if display else None
    trade_hits = _classified_trades(org_text, builder_hits, c, tag)
    for hit in trade_hits:
        s.add(("Builder",), TRADE_WORD,
              f"trade word '{hit.written}' in the name ({hit.term.source})")
    if trade_hits and not (suffixes or business_hits or company):
        s.add(_ORG, TRADE_NAME_ORG, "a trade named in the name (a trading name)")
    family_firm = FAMILY_FIRM.search(org_text)
    if family_firm:
        s.add(_ORG, FAMILY_FIRM_WEIGHT, f"family-firm name ('{family_firm.group(0).strip()}')")
        s.add(("Builder",), FAMILY_FIRM_TRADE, "family firms are common among trade contractors")

    if company:
        s.add(_ORG, 1.2, f"company name given ('{company}')")

    given = (c.given_name or "").strip()
    family = (c.family_name or "").strip()
    keyword_free = not (suffixes or builder_hits or business_hits or trade_hits or family_firm)
    if given and family and not company and keyword_free:
        s.person(1.8, f"personal name '{given} {family}' and no company")
    elif (given or family) and not company and keyword_free:
        s.person(0.9, "personal name field filled and no company")

    if tag is not None:
        kind = {"Person": "a person", "Household": "a household",
                "Corporation": "a company"}[tag.kind]
        reason = f"name tagged as {kind} by the name model"
        if tag.kind == "Household":
            s.add(("Homeowner",), MODEL_HOUSEHOLD, reason)
        elif tag.kind == "Person" and keyword_free and not company:
            s.person(MODEL_PERSON, reason)
        elif tag.kind == "Corporation":
            s.add(_ORG, MODEL_CORPORATION, reason)
    if keyword_free and not company and display:
        shape = _person_shape(display)
        if shape:
            s.person(1.2, shape)
    couple = re.search(r"\b(mr|mrs|ms|dr)\.?\s*(and|&)", display, re.IGNORECASE)
    first = display.split()[0] if display.split() else ""
    if (words and words[0] in HONORIFICS) or norm.is_title(first) or couple:
        s.add(("Homeowner",), 1.5, "title in the name")
    if re.search(r"\b(family|household|residence|whanau)\b", folded):
        s.add(("Homeowner",), 1.5, "name refers to a family or residence")
    if re.search(r"\b(family|whanau) trust\b|\batf\b", folded):
        s.add(("Homeowner",), 2.0, "name is a family trust (a household holding its home)")
    if re.match(r"(the )?estate of\b", folded):
        s.add(("Homeowner",), 2.0, "name is a deceased person's estate")


def _classified_trades(text: str, builder_hits: list[tuple[str, float]], c: ImportCandidate,
                       tag: norm.NameTag | None) -> list[trades.TradeHit]:
    """Trade words of the public classifications in ``text`` that the hand-written list
    did not already count. An agent noun that is also a surname ("Tom Painter", "Karen
    Carpenter", "Jennifer Mason") is not counted in a name read as a person's."""
    counted = {w for term, _ in builder_hits for w in term.split()}
    person_words = {_fold(x) for x in (c.given_name, c.family_name) if x}
    person = tag is not None and tag.kind in ("Person", "Household")
    out: list[trades.TradeHit] = []
    for hit in trades.find_trades(text):
        words = _fold(hit.written).split()
        if any(w in counted or any(v in counted for v in _stems(w)) for w in words):
            continue
        if hit.agent_form and (person or words[0] in person_words):
            continue
        out.append(hit)
    return out


def _person_shape(display: str) -> str | None:
    """A sentence if the display name looks like a person's name."""
    text = display.strip()
    if _has_cjk(text):
        # Japanese personal names are usually two short kanji/kana runs.
        if len(text.replace(" ", "").replace("\u3000", "")) <= 6:
            return "short Japanese name with no company form"
        return None
    if re.fullmatch(r"[^\W\d_][\w'\u2019\-]+,\s*[^\W\d_][\w'\u2019.\-]*(\s+[^\W\d_]\.?)?", text):
        return "name written 'Family, Given'"
    parts = text.replace(",", " ").split()
    lower_ok = {"and", "de", "van", "von", "del", "la", "da"}
    if (
        2 <= len(parts) <= 4
        and all(re.fullmatch(r"[^\W\d_][\w'\u2019.\-]*", p) for p in parts)
        and all(p[0].isupper() for p in parts if p.lower() not in lower_ok)
    ):
        return "name shaped like a person's (2-4 capitalised words)"
    return None


def _score_email(c: ImportCandidate, s: _Scorer) -> None:
    email = (c.email or "").strip().lower()
    if "@" not in email:
        return
    local, _, domain = email.rpartition("@")
    if domain in FREE_MAIL_DOMAINS or any(domain.endswith("." + d) for d in FREE_MAIL_DOMAINS):
        # "dan.kim+plumbing@" is a homeowner's tag for the plumber's mail, not a trade.
        mailbox = local.split("+")[0]
        if not _trade_in_email(c, re.sub(r"[._\-]", "", mailbox), f"e-mail address {mailbox}@",
                               s, short_at_end=False):
            s.add(("Homeowner",), 1.4, f"free e-mail domain {domain}")
    elif domain.endswith((".edu", ".gov", ".org", ".church")) or ".gov." in domain:
        s.add(("Business",), 1.6, f"institutional e-mail domain {domain}")
    elif domain:
        label = domain.split(".")[0].replace("-", "")
        # A word already counted from the name is not counted again from the domain.
        in_name = f" {_fold(' '.join(x for x in (c.display_name, c.company_name) if x))} "
        b_hits = [h for h in _domain_hits(label, BUILDER_TERMS) if f" {h[0]} " not in in_name]
        o_hits = [h for h in _domain_hits(label, BUSINESS_TERMS) if f" {h[0]} " not in in_name]
        s.add(_ORG, 0.9, f"company e-mail domain {domain}")
        if b_hits:
            s.add(("Builder",), 1.6, f"e-mail domain {domain} contains '{b_hits[0][0]}'")
            s.trade_in_email = b_hits[0][0]
        else:
            _trade_in_email(c, label, f"e-mail domain {domain}", s, short_at_end=True)
        if o_hits:
            s.add(("Business",), 1.2, f"e-mail domain {domain} contains '{o_hits[0][0]}'")
    if local.split("+")[0] in ROLE_MAILBOXES:
        s.add(_ORG, 1.2, f"role mailbox '{local}@'")


def _trade_in_email(c: ImportCandidate, label: str, where: str, s: _Scorer,
                    short_at_end: bool) -> bool:
    """A classified trade glued into an address (``daveclarkeplastering@``,
    ``@mendezpaintingco.com``, ``@boychukhvac.ca``) names the sender's trade: True if one
    does. It is counted once, and not again if the name already named it. Short forms
    ("hvac") count only at the end of a company's own domain (``short_at_end``)."""
    name = _fold(" ".join(x for x in (c.display_name, c.company_name) if x))
    name_stems = {trades.trade_stem(w) for w in name.split()}
    found = trades.trade_in_label(label, short_at_end)
    if found is None:
        return False
    form, term = found
    if not (set(term.stems) & name_stems):
        s.add(("Builder",), TRADE_IN_EMAIL, f"{where} names the trade '{form}' "
                                            f"({term.source})")
        s.trade_in_email = form
    return True


def _score_address(c: ImportCandidate, s: _Scorer) -> None:
    a = c.address
    if a is None:
        return
    text = _fold(" ".join(x for x in (a.line1, a.line2) if x))
    words = set(_tokens(text))
    commercial = [t for t in COMMERCIAL_ADDRESS_TERMS if t in words or (" " in t and t in text)]
    residential = [t for t in RESIDENTIAL_ADDRESS_TERMS if t in words]
    if commercial:
        s.add(_ORG, 0.9, f"commercial address ('{commercial[0]}')")
    elif residential:
        s.add(("Homeowner",), 0.5, f"residential-looking street ('{residential[0]}')")
    if re.search(r"\blot\s*#?\s*\d+", text):
        s.add(("Builder",), 1.5, "address is a building lot")


def _score_notes(c: ImportCandidate, s: _Scorer) -> None:
    if not c.notes:
        return
    text = _fold(c.notes)
    builder_hits = _phrase_hits(text, BUILDER_TERMS)
    for term, weight in builder_hits:
        s.add(("Builder",), weight * 0.6, f"notes mention '{term}'")
    counted = {w for term, _ in builder_hits for w in term.split()}
    for hit in trades.find_trades(c.notes):
        if not any(w in counted for w in _fold(hit.written).split()):
            s.add(("Builder",), TRADE_WORD * 0.6,
                  f"notes mention the trade '{hit.written}' ({hit.term.source})")
    for term, weight in _phrase_hits(text, BUSINESS_TERMS):
        s.add(("Business",), weight * 0.5, f"notes mention '{term}'")
    for term, weight in _phrase_hits(text, HOMEOWNER_NOTE_TERMS):
        s.add(("Homeowner",), weight, f"notes mention '{term}'")


def suggest_customer_type(candidate: ImportCandidate) -> TypeSuggestion:
    """Suggest Homeowner, Business or Builder for ``candidate``, with confidence and reasons."""
    s = _Scorer()
    _score_names(candidate, s)
    _score_email(candidate, s)
    _score_address(candidate, s)
    _score_notes(candidate, s)

    if s.trade_in_email and s.person_name:
        # A person's name whose own e-mail address names a trade is a sole trader: the
        # personal-name signals fit them as well as a homeowner, so they cancel out.
        s.add(("Builder",), s.person_name,
              f"a person's name with an e-mail address naming the trade "
              f"'{s.trade_in_email}': a sole trader")
    best = max(CUSTOMER_TYPES, key=lambda t: (s.scores[t], -CUSTOMER_TYPES.index(t)))
    exps = {t: math.exp(s.scores[t] / SOFTMAX_TEMPERATURE) for t in CUSTOMER_TYPES}
    confidence = exps[best] / sum(exps.values())
    confidence = min(1.0, max(0.0, confidence))

    supporting = sorted(s.evidence[best], key=lambda e: -e[0])
    reasons = [r for _, r in supporting]
    if not reasons:
        reasons = [f"no strong signals; {best} is the most common type"]
    runner_up = max(
        (t for t in CUSTOMER_TYPES if t != best), key=lambda t: s.scores[t]
    )
    contrary = [r for _, r in s.evidence[runner_up] if r not in reasons]
    if contrary and confidence < 0.75:
        reasons.append(f"but also: {contrary[0]} (suggests {runner_up})")
    return TypeSuggestion(best, round(confidence, 4), tuple(reasons))
