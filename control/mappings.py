"""Wizard step 3 and later: income-account mappings per item; saving one re-drives the
events that waited for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from control.context import (
    ControlContext,
    ControlError,
    active_connection,
    adapter_for,
    call_provider,
    company_links,
    count_statuses,
    decode_snapshots,
)
from control.wizard.progress import (
    load_progress,
    mark_step,
    progress_view,
    read_progress,
    save_progress,
)
from providers.port import IncomeAccount
from state import repository as repo
from state.connections import ConnectionInfo
from state.models import (
    IncomeAccountMapping,
    ParkedEvent,
)

__all__ = [
    "income_accounts",
    "known_items",
    "map_all_unmapped",
    "map_item",
    "mappings_of",
    "redrive_mappings",
]

# --------------------------------------------------------------------------- step 3: accounts


def known_items(ctx: ControlContext, s: Session, info: ConnectionInfo,
                 state: Mapping[str, Any]) -> dict[str, str | None]:
    """BlueClerk items this account knows (snapshots and links), id -> name."""
    known: dict[str, str | None] = {}
    for lk in company_links(s, info, "item"):
        known[lk.entity_id] = state["item_names"].get(lk.entity_id)
    for item_id, item in decode_snapshots(ctx, s, info.account_id, "item").items():
        known[item_id] = item.name
    return known


def mappings_of(s: Session, account_id: str) -> dict[str, IncomeAccountMapping]:
    return {m.item_id: m for m in s.execute(select(IncomeAccountMapping).where(
        IncomeAccountMapping.account_id == account_id)).scalars()}


def income_accounts(ctx: ControlContext, account_id: str) -> dict[str, Any]:
    """Step 3: the provider's income accounts, the current mappings and what is unmapped."""
    info = active_connection(ctx, account_id)
    adapter = adapter_for(ctx, info)
    accounts: list[IncomeAccount] = call_provider(ctx, info, "listing income accounts",
                                                   adapter.list_income_accounts)
    with ctx.services.db.transaction() as s:
        state = read_progress(s, account_id)
        known = known_items(ctx, s, info, state)
        mapped = mappings_of(s, account_id)
    return {
        "account_id": account_id, "provider": info.provider,
        "income_accounts": [{"id": a.id, "name": a.name, "code": a.code} for a in accounts],
        "mappings": [{"item_id": m.item_id, "item_name": known.get(m.item_id),
                      "income_account_id": m.provider_account_id,
                      "income_account_name": m.provider_account_name}
                     for m in sorted(mapped.values(), key=lambda m: m.item_id)],
        "unmapped": [{"item_id": i, "item_name": n} for i, n in sorted(known.items())
                     if i not in mapped],
    }


def _income_account(ctx: ControlContext, info: ConnectionInfo, account: str) -> IncomeAccount:
    adapter = adapter_for(ctx, info)
    accounts: list[IncomeAccount] = call_provider(ctx, info, "listing income accounts",
                                                   adapter.list_income_accounts)
    for a in accounts:
        if account in (a.id, a.code):
            return a
    names = ", ".join(f"{a.id} ({a.name})" for a in accounts[:10])
    raise ControlError("unknown_income_account", f"{info.provider} has no income account "
                       f"{account!r}; choose one of: {names}", 400)


def redrive_mappings(ctx: ControlContext, account_id: str, item_ids: Sequence[str]
                      ) -> dict[str, int]:
    if not item_ids:
        return {}
    waits = {f"mapping:{i}" for i in item_ids}
    with ctx.services.db.transaction() as s:
        waiting = s.execute(select(func.count()).select_from(ParkedEvent).where(
            ParkedEvent.account_id == account_id, ParkedEvent.reason == "unmapped_item",
            ParkedEvent.waits_for.in_(sorted(waits)))).scalar_one()
    if not waiting:
        return {}
    statuses = ctx.engine().drive_parked(account_id, {"unmapped_item"}, waits)
    ctx.publish()
    return count_statuses(statuses)


def _save_mappings(ctx: ControlContext, info: ConnectionInfo, item_ids: Sequence[str],
                   account: IncomeAccount) -> dict[str, Any]:
    with ctx.services.db.transaction() as s:
        row, state = load_progress(s, info.account_id)
        for item_id in item_ids:
            mapping = repo.get_mapping(s, info.account_id, item_id)
            if mapping is None:
                s.add(IncomeAccountMapping(account_id=info.account_id, item_id=item_id,
                                           provider_account_id=account.id,
                                           provider_account_name=account.name))
            else:
                mapping.provider_account_id = account.id
                mapping.provider_account_name = account.name
            state["mapped_by_wizard"][item_id] = account.id
        mark_step(ctx, state, "accounts", "done")
        save_progress(ctx, row, state)
    redriven = redrive_mappings(ctx, info.account_id, item_ids)
    return {"account_id": info.account_id, "income_account": {"id": account.id,
                                                              "name": account.name},
            "mapped": list(item_ids), "redriven": redriven, "progress": progress_view(state)}


def map_item(ctx: ControlContext, account_id: str, item_id: str, income_account: str
             ) -> dict[str, Any]:
    """Map one item (new or changed mapping) and re-drive what waited for it."""
    info = active_connection(ctx, account_id)
    account = _income_account(ctx, info, income_account)
    with ctx.services.db.transaction() as s:
        state = read_progress(s, account_id)
        known = known_items(ctx, s, info, state)
    if item_id not in known:
        raise ControlError("unknown_item", f"BlueClerk item {item_id!r} is not known to the "
                           "sync yet (no event and no import); import it in step 2 or map it "
                           "after its first change event", 404)
    return _save_mappings(ctx, info, [item_id], account)


def map_all_unmapped(ctx: ControlContext, account_id: str, income_account: str
                     ) -> dict[str, Any]:
    """Map every known item without a mapping to one income account."""
    info = active_connection(ctx, account_id)
    account = _income_account(ctx, info, income_account)
    with ctx.services.db.transaction() as s:
        state = read_progress(s, account_id)
        known = known_items(ctx, s, info, state)
        mapped = set(mappings_of(s, account_id))
    return _save_mappings(ctx, info, sorted(set(known) - mapped), account)


