"""Wizard step 3 (taxes) and later: each BlueClerk tax rate -> one tax code of the company.

BlueClerk's tax rates are the ones its invoices carry (snapshots) and the ones already
mapped. They are matched automatically against the company's codes (providers.taxes:
by rate, name and compound; US automated sales tax: one code for every taxed line) on
connect, on a wizard (re-)run and at an invoice's first sight, and only where exactly
one code fits; the rest are listed for the user, with the candidates and the reason.
Saving a mapping re-drives the invoices that waited for it (`unmapped_tax_rate`).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from control.context import (
    ControlContext,
    ControlError,
    active_connection,
    adapter_for,
    call_provider,
    count_statuses,
    decode_snapshots,
)
from control.wizard.progress import load_progress, mark_step, save_progress
from providers.taxes import BlueClerkTaxRate, ProviderTaxRate, TaxMatch, match_tax_rate
from schemas.records import Invoice
from state import repository as repo
from state.connections import ConnectionInfo
from state.models import ParkedEvent, TaxRateMapping

__all__ = ["auto_match_tax_rates", "map_all_unmapped_tax_rates", "map_tax_rate", "tax_rates"]

_WAITING = "unmapped_tax_rate"


def _known_rates(ctx: ControlContext, s: Session, account_id: str
                 ) -> dict[str, BlueClerkTaxRate]:
    """BlueClerk's tax rates of the account: on its invoices, and already mapped."""
    rates: dict[str, BlueClerkTaxRate] = {}
    for row in s.execute(select(TaxRateMapping).where(
            TaxRateMapping.account_id == account_id)).scalars():
        rates[row.tax_key] = BlueClerkTaxRate(row.tax_key, row.tax_name, Decimal(row.tax_rate))
    invoices: dict[str, Invoice] = decode_snapshots(ctx, s, account_id, "invoice")
    for invoice in invoices.values():
        if invoice.tax_mode == "none":
            continue
        for line in invoice.lines:
            if line.taxed:
                rates[line.tax_key] = BlueClerkTaxRate(line.tax_key, line.tax_rate_name,
                                                       line.tax_rate_percent, line.tax_compound)
    return rates


def _codes(ctx: ControlContext, info: ConnectionInfo) -> list[ProviderTaxRate]:
    adapter = adapter_for(ctx, info)
    codes: list[ProviderTaxRate] = call_provider(ctx, info, "listing tax codes",
                                                 adapter.list_tax_rates)
    return codes


def _code_json(code: ProviderTaxRate) -> dict[str, Any]:
    return {"code": code.code, "name": code.name,
            "rate": f"{code.rate.normalize():f}" if code.rate is not None else None,
            "compound": code.compound, "automated": code.kind == "automated"}


def _mapping_json(row: TaxRateMapping) -> dict[str, Any]:
    return {**_code_json(repo.tax_code_of(row)), "matched_by": row.matched_by,
            "reason": row.reason}


def _save_matches(ctx: ControlContext, account_id: str, matches: Iterable[TaxMatch]
                  ) -> list[str]:
    saved = []
    with ctx.services.db.transaction() as s:
        for m in matches:
            if m.code is not None and repo.get_tax_mapping(s, account_id, m.rate.key) is None:
                repo.save_tax_mapping(s, account_id, m.rate, m.code, "auto", m.reason)
                saved.append(m.rate.key)
    return saved


def auto_match_tax_rates(ctx: ControlContext, account_id: str) -> dict[str, Any]:
    """Map automatically every known, unmapped rate that exactly one code fits, and
    re-drive the invoices that waited for them."""
    info = active_connection(ctx, account_id)
    with ctx.services.db.transaction() as s:
        known = _known_rates(ctx, s, account_id)
        unmapped = [r for k, r in known.items() if repo.get_tax_mapping(s, account_id, k)
                    is None]
    if not unmapped:
        return {"matched": [], "redriven": {}}
    codes = _codes(ctx, info)
    saved = _save_matches(ctx, account_id, (match_tax_rate(r, codes, info.provider)
                                            for r in unmapped))
    return {"matched": saved, "redriven": _redrive(ctx, account_id, saved)}


def tax_rates(ctx: ControlContext, account_id: str) -> dict[str, Any]:
    """Step 3 (taxes): the company's tax codes, BlueClerk's rates with their mapping (and
    why), and the rates still to map with the candidates to choose from."""
    info = active_connection(ctx, account_id)
    codes = _codes(ctx, info)
    with ctx.services.db.transaction() as s:
        known = _known_rates(ctx, s, account_id)
        mapped = {k: _mapping_json(m) for k in known
                  if (m := repo.get_tax_mapping(s, account_id, k)) is not None}
        waiting = dict(s.execute(
            select(ParkedEvent.waits_for, func.count()).where(
                ParkedEvent.account_id == account_id, ParkedEvent.reason == _WAITING)
            .group_by(ParkedEvent.waits_for)).all())
    rows, unmapped = [], []
    for key, rate in sorted(known.items()):
        row: dict[str, Any] = {"tax_key": key, "name": rate.name,
                               "rate": f"{rate.rate.normalize():f}",
                               "compound": rate.compound, "mapping": mapped.get(key),
                               "invoices_waiting": int(waiting.get(f"taxrate:{key}", 0))}
        if key not in mapped:
            match = match_tax_rate(rate, codes, info.provider)
            row["suggestion"] = _code_json(match.code) if match.code else None
            row["reason"] = match.reason
            row["candidates"] = [_code_json(c) for c in match.candidates]
            unmapped.append(key)
        rows.append(row)
    automated = [c for c in codes if c.kind == "automated"]
    return {"account_id": account_id, "provider": info.provider,
            "tax_codes": [_code_json(c) for c in codes], "tax_rates": rows,
            "unmapped": unmapped,
            # Where one code serves every taxed line (US automated sales tax), the wizard
            # offers "apply to all unmapped" with it.
            "apply_to_all": _code_json(automated[0]) if automated else None}


def _code(ctx: ControlContext, info: ConnectionInfo, code: str) -> ProviderTaxRate:
    codes = _codes(ctx, info)
    for c in codes:
        if code in (c.code, c.name):
            return c
    names = ", ".join(f"{c.code} ({c.name})" for c in codes[:12])
    raise ControlError("unknown_tax_code", f"{info.provider} has no tax code {code!r}; choose "
                       f"one of: {names}", 400)


def _redrive(ctx: ControlContext, account_id: str, keys: Iterable[str]) -> dict[str, int]:
    waits = {f"taxrate:{k}" for k in keys}
    if not waits:
        return {}
    with ctx.services.db.transaction() as s:
        waiting = s.execute(select(func.count()).select_from(ParkedEvent).where(
            ParkedEvent.account_id == account_id, ParkedEvent.reason == _WAITING,
            ParkedEvent.waits_for.in_(sorted(waits)))).scalar_one()
    if not waiting:
        return {}
    statuses = ctx.engine().drive_parked(account_id, {_WAITING}, waits)
    ctx.publish()
    return count_statuses(statuses)


def _save(ctx: ControlContext, info: ConnectionInfo, keys: list[str], code: ProviderTaxRate
          ) -> dict[str, Any]:
    with ctx.services.db.transaction() as s:
        known = _known_rates(ctx, s, info.account_id)
        for key in keys:
            repo.save_tax_mapping(s, info.account_id, known[key], code, "user",
                                  f"chosen by the user: {code.name} ({code.code})")
        row, state = load_progress(s, info.account_id)
        mark_step(ctx, state, "accounts", "done")
        save_progress(ctx, row, state)
    return {"account_id": info.account_id, "tax_code": _code_json(code), "mapped": keys,
            "redriven": _redrive(ctx, info.account_id, keys)}


def map_tax_rate(ctx: ControlContext, account_id: str, tax_key: str, tax_code: str
                 ) -> dict[str, Any]:
    """Map one BlueClerk tax rate (new or changed mapping); re-drive what waited for it."""
    info = active_connection(ctx, account_id)
    with ctx.services.db.transaction() as s:
        known = _known_rates(ctx, s, account_id)
    if tax_key not in known:
        raise ControlError("unknown_tax_rate", f"BlueClerk tax rate {tax_key!r} is not known "
                           "to the sync yet (no invoice carries it); map it after its first "
                           "invoice arrives", 404)
    return _save(ctx, info, [tax_key], _code(ctx, info, tax_code))


def map_all_unmapped_tax_rates(ctx: ControlContext, account_id: str, tax_code: str
                               ) -> dict[str, Any]:
    """Map every known rate without a mapping to one code (e.g. QuickBooks US `TAX`)."""
    info = active_connection(ctx, account_id)
    code = _code(ctx, info, tax_code)
    with ctx.services.db.transaction() as s:
        known = _known_rates(ctx, s, account_id)
        keys = sorted(k for k in known if repo.get_tax_mapping(s, account_id, k) is None)
    return _save(ctx, info, keys, code)
