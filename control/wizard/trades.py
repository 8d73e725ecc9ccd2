"""Construction and building trade words from public classifications, as Builder evidence.

The words come from ``trade_vocabulary.tsv`` beside this module: the titles of the US SOC
2018 construction occupations (47-0000), NAICS/SCIAN 236-238 construction industries,
UK SOC 2020 531x/532x building trades, ANZSCO 33/34 trades and 821x labourers, Canada's
NOC 2021 72/73 trades (English and French), Japan's JSIC division D and China's GB/T 4754
section E. They were written from those public lists, not from any labelled customer, so
they can be measured honestly on held-out records. The rows at the end of the file (issue
15) are the exception: trades held-out set 2 missed, each with the dictionary or
classification that gives the word its trade meaning; that set is no longer held out.

A name matches a term through a light stemmer, so the forms a trade is written in fall
together: roofer / roofers / roofing / roof; plasterer / plastering; electrician /
electrical / électricité; plombier / plomberie; tiler / tiling / tiles; joiner / joinery;
excavator / excavation / excavating.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

__all__ = [
    "VOCABULARY_PATH",
    "TradeHit",
    "TradeTerm",
    "find_trades",
    "load_terms",
    "surface_forms",
    "trade_in_label",
    "trade_stem",
]

VOCABULARY_PATH = Path(__file__).with_name("trade_vocabulary.tsv")

# Longest first. "ies" becomes "y"; the rest are removed. Applied until nothing changes,
# so agent, activity and plural forms of one trade reach one root.
_SUFFIXES: tuple[tuple[str, str], ...] = tuple(sorted(
    [("ations", "at"), ("ation", "at"), ("itions", ""), ("ition", ""), ("ctions", "ct"),
     ("ction", "ct"), ("ings", ""),
     ("ing", ""), ("eries", ""), ("erie", ""), ("ery", ""), ("ers", ""), ("er", ""),
     ("ors", ""), ("or", ""), ("iers", ""), ("ier", ""), ("eurs", ""), ("eur", ""),
     ("iens", ""), ("ien", ""), ("ians", ""), ("ian", ""), ("ity", ""), ("ites", ""),
     ("ite", ""), ("ures", ""), ("ure", ""), ("als", ""), ("al", ""), ("ies", "y"),
     ("es", ""), ("s", ""), ("ry", ""), ("e", "")],
    key=lambda p: -len(p[0])))
_MIN_ROOT = 3
# Agent nouns are also surnames (Carpenter, Mason, Painter, Glazier, Slater): a trade
# word in that form is not counted when it is the surname of a name read as a person's.
_AGENT_ENDINGS = ("er", "or", "ier", "ian", "eur", "ien", "mason", "masons")


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


@lru_cache(maxsize=65536)
def trade_stem(word: str) -> str:
    """The root a trade word's forms share: 'Roofers', 'roofing' -> 'roof'."""
    w = _fold(word).strip("'-.")
    changed = True
    while changed:
        changed = False
        for suffix, replacement in _SUFFIXES:
            if w.endswith(suffix) and len(w) - len(suffix) >= _MIN_ROOT:
                w = w[: -len(suffix)] + replacement
                changed = True
                break
    return w


@dataclass(frozen=True, slots=True)
class TradeTerm:
    term: str  # as written in the vocabulary ("roofer", "air conditioning", "工務店")
    stems: tuple[str, ...]  # stemmed words; empty for a CJK term (matched as a substring)
    source: str  # "UKSOC 5313 Roofers, roof tilers and slaters"
    # Every way the vocabulary writes a term with these stems, ``term`` first, each with
    # the source that writes it (("electrician", "SOC 47-2111 ..."), ("electrical",
    # "UKSOC 5241 ...")): e-mail addresses are matched on all of them.
    forms: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class TradeHit:
    written: str  # the words of the name that matched, as written
    term: TradeTerm
    agent_form: bool  # the name's word is an agent noun ("Carpenter"), maybe a surname


def _is_cjk(text: str) -> bool:
    return any(ord(ch) > 0x2E80 for ch in text)


# "&" is not a word and "and"/"et" are not trade words: "Brick & Block" and "brick and
# block" are the same two words.
_CONNECTORS = frozenset({"and", "et"})


@lru_cache(maxsize=1)
def load_terms(path: Path = VOCABULARY_PATH) -> tuple[TradeTerm, ...]:
    """Every term of the vocabulary file, first source kept for a term named twice (by
    its stems); every written form of it kept in ``forms``."""
    first: dict[str, TradeTerm] = {}
    forms: dict[str, dict[str, str]] = {}  # key -> written form -> its first source
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        scheme, title, terms = line.split("\t")
        for raw in terms.split(","):
            term = raw.strip()
            if not term:
                continue
            stems = () if _is_cjk(term) else tuple(
                trade_stem(w) for w in re.split(r"[\s\-]+", term)
                if w and _fold(w) not in _CONNECTORS)
            key = term if not stems else " ".join(stems)
            first.setdefault(key, TradeTerm(term, stems, f"{scheme} {title}"))
            forms.setdefault(key, {}).setdefault(term, f"{scheme} {title}")
    return tuple(TradeTerm(t.term, t.stems, t.source, tuple(forms[k].items()))
                 for k, t in first.items())


@lru_cache(maxsize=1)
def _index() -> tuple[dict[str, TradeTerm], tuple[TradeTerm, ...], tuple[TradeTerm, ...]]:
    single: dict[str, TradeTerm] = {}
    multi: list[TradeTerm] = []
    cjk: list[TradeTerm] = []
    for t in load_terms():
        if not t.stems:
            cjk.append(t)
        elif len(t.stems) == 1:
            single.setdefault(t.stems[0], t)
        else:
            multi.append(t)
    return single, tuple(multi), tuple(cjk)


_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


@lru_cache(maxsize=65536)
def find_trades(text: str) -> tuple[TradeHit, ...]:
    """The vocabulary's trade terms in ``text`` (a name or a sentence), longest first; a
    word counts once (in "air conditioning" not also as "conditioning")."""
    single, multi, cjk = _index()
    found = [m for m in _WORD.finditer(text) if _fold(m.group(0)) not in _CONNECTORS]
    words = [m.group(0) for m in found]
    stems = [trade_stem(w) for w in words]
    used = [False] * len(words)
    hits: list[TradeHit] = []
    for term in sorted(multi, key=lambda t: -len(t.stems)):
        n = len(term.stems)
        for i in range(len(stems) - n + 1):
            if tuple(stems[i:i + n]) == term.stems and not any(used[i:i + n]):
                used[i:i + n] = [True] * n
                written = text[found[i].start():found[i + n - 1].end()]
                hits.append(TradeHit(written, term, False))
    for i, stem in enumerate(stems):
        if not used[i] and stem in single and len(words[i]) >= 3:
            used[i] = True
            agent = _fold(words[i]).endswith(_AGENT_ENDINGS) or trade_stem(words[i]) == _fold(
                words[i])
            hits.append(TradeHit(words[i], single[stem], agent))
    for term in cjk:
        if term.term in text:
            hits.append(TradeHit(term.term, term, False))
    return tuple(hits)


# A form glued into an e-mail address is looked for anywhere in it from this length;
# a shorter one (4-5 letters: "hvac", "tiler") only at the end of a company's own domain
# label, after a name of at least three letters ("boychukhvac.ca"), where a trading name
# puts it. Inside a longer word, or in a free-mail handle ("joeversatile@"), a short form
# is too often a piece of another word.
SURFACE_ANYWHERE = 6
SURFACE_AT_END = 4


@lru_cache(maxsize=1)
def surface_forms() -> tuple[tuple[str, TradeTerm], ...]:
    """Single trade words in the forms they are glued into e-mail addresses and domains
    ('plastering' in daveclarkeplastering@...), from every way the vocabulary writes a
    term ('electrician' and 'electrical'), at least four letters, longest first."""
    forms: dict[str, TradeTerm] = {}
    for t in load_terms():
        if len(t.stems) != 1:
            continue
        for written, source in t.forms or ((t.term, t.source),):
            # the form's own wording and source, so a reason cites the list it is from
            written_term = TradeTerm(written, t.stems, source, t.forms)
            word = re.sub(r"[^a-z]", "", _fold(written))
            variants = {word, word + "s"}
            if word.endswith("ier"):
                variants.add(word[:-3] + "ing")
            elif word.endswith("er"):
                variants |= {word[:-2] + "ing", word + "s"}
            for v in variants:
                if len(v) >= SURFACE_AT_END:
                    forms.setdefault(v, written_term)
    return tuple(sorted(forms.items(), key=lambda kv: -len(kv[0])))


def trade_in_label(label: str, short_at_end: bool = False) -> tuple[str, TradeTerm] | None:
    """The longest trade form glued into an e-mail local part or domain label
    (``mattkellyelectrical``, ``boychukhvac``), or None: a form of six letters or more
    anywhere; with ``short_at_end`` (a company's own domain label) also a shorter one at
    the end after at least three letters."""
    for form, term in surface_forms():
        if len(form) >= SURFACE_ANYWHERE:
            if form in label:
                return form, term
        elif short_at_end and label.endswith(form) and len(label) - len(form) >= 3:
            return form, term
    return None
