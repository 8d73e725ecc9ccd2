"""Wizard step 3 and later: income-account mappings per item; saving one re-drives the
events that waited for it.

A mapping only means something where items carry an income account (QuickBooks
`IncomeAccountRef`, Xero `SalesDetails.AccountCode`); FreshBooks items have none, so there
step 3 says so and refuses mappings instead of accepting them to no effect.

Saving a mapping for an item that is linked to a provider item (imported or linked in
step 2, or already synced) first gives that provider item the account, under the tenant
lock, and only then re-drives the invoices that waited: an invoice line posts to its
item's account, so re-driving first would still find the item without one.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from consumers.handlers import PROVIDERS_NEEDING_INCOME_ACCOUNT, payload_hash
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
from providers.port import IncomeAccount, ProviderRecord, RemoteItem, WriteIntent
from schemas.events import event_from_avro
from schemas.records import Item
from state import repository as repo
from state.connections import ConnectionInfo
from state.locks import TenantLocks
from state.models import (
    IncomeAccountMapping,
    ParkedEvent,
)

__all__ = [
    "income_accounts",
    "known_items",
    "map_all_unmapped",
    "map_item",
    "mappings_apply",
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


_PROVIDER_NAMES = {"quickbooks": "QuickBooks Online", "xero": "Xero",
                   "freshbooks": "FreshBooks"}
_PRICE_SCALE = Decimal("0.0001")


def mappings_apply(provider: str) -> bool:
    """Whether the provider's items carry an income account a mapping can set."""
    return provider in PROVIDERS_NEEDING_INCOME_ACCOUNT


def _not_applicable(provider: str) -> str:
    return (f"{_PROVIDER_NAMES.get(provider, provider)} items have no income account; "
            "mappings are not used")


def _refuse_if_not_applicable(info: ConnectionInfo) -> None:
    if mappings_apply(info.provider):
        return
    a = info.account_id
    raise ControlError(
        "mapping_not_applicable",
        f"{_not_applicable(info.provider)}, so nothing was saved. Nothing is needed: items "
        f"and invoices sync to {_PROVIDER_NAMES.get(info.provider, info.provider)} without "
        f"one. Skip this step: `blueclerk-sync wizard skip --account {a} --step accounts` "
        f"(POST /v1/accounts/{a}/wizard/steps/accounts/skip)", 409)


def income_accounts(ctx: ControlContext, account_id: str) -> dict[str, Any]:
    """Step 3: the provider's income accounts, the current mappings and what is unmapped
    (on FreshBooks, that mappings do not apply)."""
    info = active_connection(ctx, account_id)
    applies = mappings_apply(info.provider)
    accounts: list[IncomeAccount] = []
    if applies:
        adapter = adapter_for(ctx, info)
        accounts = call_provider(ctx, info, "listing income accounts",
                                 adapter.list_income_accounts)
    with ctx.services.db.transaction() as s:
        state = read_progress(s, account_id)
        known = known_items(ctx, s, info, state)
        mapped = mappings_of(s, account_id)
    return {
        "account_id": account_id, "provider": info.provider,
        "mappings_apply": applies,
        "message": None if applies else (
            f"{_not_applicable(info.provider)}; nothing to do in this step: skip it with "
            f"`blueclerk-sync wizard skip --account {account_id} --step accounts`"),
        "income_accounts": [{"id": a.id, "name": a.name, "code": a.code} for a in accounts],
        "mappings": [{"item_id": m.item_id, "item_name": known.get(m.item_id),
                      "income_account_id": m.provider_account_id,
                      "income_account_name": m.provider_account_name}
                     for m in sorted(mapped.values(), key=lambda m: m.item_id)],
        "unmapped": [{"item_id": i, "item_name": n} for i, n in sorted(known.items())
                     if i not in mapped] if applies else [],
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


@dataclass(frozen=True, slots=True)
class _Rewrite:
    """A provider item to be given the mapped account: what to write and where."""

    item: Item
    link: ProviderRecord
    applied_version: int
    digest: str


def _linked_items_to_rewrite(ctx: ControlContext, info: ConnectionInfo,
                             item_ids: Sequence[str], account: IncomeAccount
                             ) -> list[_Rewrite]:
    """Linked provider items that do not have `account` yet, with the record to write:
    the item's latest BlueClerk snapshot, or (imported from the books, no BlueClerk event
    yet) the provider item as it is. An item with a change of its own still parked is left
    to that change (re-driven with the mapping), so its history is not reordered."""
    plans: list[tuple[str, ProviderRecord, int, str | None, Item | None]] = []
    with ctx.services.db.transaction() as s:
        waiting = {p.entity_id for p in repo.parked_for(s, info.account_id)
                   if p.entity_type == "item"}
        for item_id in item_ids:
            link = repo.get_link(s, info, "item", item_id)
            if link is None or item_id in waiting:
                continue
            snapshot = repo.get_snapshot(s, info.account_id, "item", item_id)
            record: Item | None = None
            if snapshot is not None:
                decoded = ctx.services.codec.decode(snapshot.payload)
                found = event_from_avro(decoded.schema_name, decoded.value).record
                record = found if isinstance(found, Item) else None
            plans.append((item_id, ProviderRecord(link.provider_id, link.provider_version),
                          link.last_applied_version, link.payload_hash, record))
    remote: dict[str, RemoteItem] | None = None
    rewrites: list[_Rewrite] = []
    for item_id, linked, applied_version, synced_hash, record in plans:
        if record is None:
            if remote is None:
                adapter = adapter_for(ctx, info)
                remote = {i.id: i for i in call_provider(ctx, info, "listing items",
                                                         adapter.list_items)}
            books = remote.get(linked.id)
            if books is None:
                continue  # gone from the books: the invoice's own write will say so
            if books.income_account_id == account.id:
                continue  # already posts to this account
            record = Item(id=item_id, name=books.name, sku=books.sku,
                          description=books.description,
                          unit_price=books.unit_price.quantize(_PRICE_SCALE),
                          active=books.active)
        digest = payload_hash(info.provider, record, {"income_account": account.id})
        if synced_hash != digest:
            rewrites.append(_Rewrite(record, linked, applied_version, digest))
    return rewrites


def _give_linked_items_the_account(ctx: ControlContext, info: ConnectionInfo,
                                   item_ids: Sequence[str], account: IncomeAccount
                                   ) -> tuple[list[str], ControlError | None]:
    """Write the account onto each linked provider item (QuickBooks IncomeAccountRef, Xero
    SalesDetails.AccountCode). Returns the items whose mapping may be saved and the first
    refusal; an item whose write failed keeps no mapping, so nothing waiting for it is
    re-driven into a failure."""
    adapter = adapter_for(ctx, info)
    plans = _linked_items_to_rewrite(ctx, info, item_ids, account)
    written: set[str] = set()
    failed: dict[str, str] = {}
    first: ControlError | None = None
    for plan in plans:
        item_id = plan.item.id
        # A fresh key: the write is an update of a known record (never a duplicate), and
        # mapping A, then B, then A again must not be answered with a replayed response.
        write = WriteIntent(uuid.uuid4().hex)
        try:
            record: ProviderRecord = call_provider(
                ctx, info, f"giving item {item_id} the income account {account.id}",
                functools.partial(adapter.upsert_item, plan.item, account.id, plan.link, write))
        except ControlError as exc:
            failed[item_id] = exc.message
            first = first or exc
            if exc.code == "reconnect_required":
                break
            continue
        with ctx.services.db.transaction() as s:
            repo.save_link(s, info, "item", item_id, record.id, record.version,
                           plan.applied_version, plan.digest)
        written.add(item_id)
    to_write = {p.item.id for p in plans}
    saved = [i for i in item_ids if i not in to_write or i in written]
    if first is None:
        return saved, None
    details = "; ".join(f"{i}: {m}" for i, m in failed.items())
    return saved, ControlError(
        first.code, f"the income account {account.id} could not be set on the "
        f"{info.provider} item linked to {', '.join(failed)} ({details}); no mapping was "
        f"saved for {', '.join(i for i in item_ids if i not in saved)}"
        + (f" (saved for {', '.join(saved)})" if saved else "")
        + ". Save the mapping again once the cause is fixed", first.status)


def _save_mappings(ctx: ControlContext, info: ConnectionInfo, item_ids: Sequence[str],
                   account: IncomeAccount) -> dict[str, Any]:
    # Held across the provider writes and the save, so no worker posts an invoice between
    # the mapping being saved and its item getting the account.
    with TenantLocks(ctx.services.db).hold(info.account_id):
        saved, refused = _give_linked_items_the_account(ctx, info, item_ids, account)
        with ctx.services.db.transaction() as s:
            row, state = load_progress(s, info.account_id)
            for item_id in saved:
                mapping = repo.get_mapping(s, info.account_id, item_id)
                if mapping is None:
                    s.add(IncomeAccountMapping(account_id=info.account_id, item_id=item_id,
                                               provider_account_id=account.id,
                                               provider_account_name=account.name))
                else:
                    mapping.provider_account_id = account.id
                    mapping.provider_account_name = account.name
                state["mapped_by_wizard"][item_id] = account.id
            if saved or not item_ids:
                mark_step(ctx, state, "accounts", "done")
            save_progress(ctx, row, state)
    redriven = redrive_mappings(ctx, info.account_id, saved)
    if refused is not None:
        raise refused
    return {"account_id": info.account_id, "income_account": {"id": account.id,
                                                              "name": account.name},
            "mapped": list(saved), "redriven": redriven, "progress": progress_view(state)}


def map_item(ctx: ControlContext, account_id: str, item_id: str, income_account: str
             ) -> dict[str, Any]:
    """Map one item (new or changed mapping): give its linked provider item the account,
    then re-drive what waited for it."""
    info = active_connection(ctx, account_id)
    _refuse_if_not_applicable(info)
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
    _refuse_if_not_applicable(info)
    account = _income_account(ctx, info, income_account)
    with ctx.services.db.transaction() as s:
        state = read_progress(s, account_id)
        known = known_items(ctx, s, info, state)
        mapped = set(mappings_of(s, account_id))
    return _save_mappings(ctx, info, sorted(set(known) - mapped), account)


