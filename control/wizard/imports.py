"""Wizard steps 1 and 2: import or link the provider's customers (with suggested types and
duplicates) and items. Links, progress and the inbound events announcing them commit in
one transaction; the events are then published from the outbox.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from control.context import (
    ControlContext,
    ControlError,
    active_connection,
    adapter_for,
    call_provider,
    company_links,
    decode_snapshots,
    import_id,
    now,
)
from control.mappings import redrive_mappings
from control.wizard.customer_types import (
    CUSTOMER_TYPES,
    ImportCandidate,
    suggest_customer_type,
)
from control.wizard.duplicates import ExistingCustomer, find_duplicates
from control.wizard.normalise import country_code
from control.wizard.progress import (
    load_progress,
    mark_step,
    progress_view,
    save_progress,
)
from producers.inbound_changes import add_change_event, change_id_for
from providers.port import RemoteCustomer, RemoteItem
from schemas.records import Address, Customer, Item
from state import repository as repo
from state.connections import ConnectionInfo
from state.models import IncomeAccountMapping

__all__ = [
    "Selection",
    "company_country",
    "import_customers",
    "import_items",
    "list_customers",
    "list_items",
]

_PRICE_SCALE = Decimal("0.0001")


# --------------------------------------------------------------------------- step 1: customers


def _customer_json(c: RemoteCustomer) -> dict[str, Any]:
    return {"provider_id": c.id, "display_name": c.display_name, "given_name": c.given_name,
            "family_name": c.family_name, "company_name": c.company_name, "email": c.email,
            "phone": c.phone, "address": asdict(c.address) if c.address else None,
            "active": c.active}


def _candidate(c: RemoteCustomer) -> ImportCandidate:
    return ImportCandidate(display_name=c.display_name, given_name=c.given_name,
                           family_name=c.family_name, company_name=c.company_name,
                           email=c.email, phone=c.phone, address=c.address)


def company_country(addresses: Iterable[Address | None]) -> str | None:
    """The company's country as its customers' addresses give it: the country most of
    them name (ISO alpha-2), or None when none names one or two countries tie.

    The provider port does not expose the company's own country (QuickBooks'
    CompanyInfo.Country, Xero's Organisation.CountryCode, FreshBooks' business address),
    and the connection does not store it; a company's customers are overwhelmingly in
    its own country, so their addresses are the best signal available here. None reads
    numbers as US, the behaviour before issue 15."""
    counts = Counter(code for a in addresses if a is not None
                     for code in [country_code(a.country)] if code)
    ranked = counts.most_common(2)
    if not ranked or (len(ranked) == 2 and ranked[0][1] == ranked[1][1]):
        return None
    return ranked[0][0]


def list_customers(ctx: ControlContext, account_id: str) -> dict[str, Any]:
    """Step 1: the provider's customers with a suggested type and possible duplicates."""
    info = active_connection(ctx, account_id)
    adapter = adapter_for(ctx, info)
    remote: list[RemoteCustomer] = call_provider(ctx, info, "listing customers",
                                                  adapter.list_customers)
    with ctx.services.db.transaction() as s:
        existing: dict[str, Customer] = decode_snapshots(ctx, s, account_id, "customer")
        links = company_links(s, info, "customer")
    linked_by_provider = {lk.provider_id: lk.entity_id for lk in links}
    linked_ids = {lk.entity_id for lk in links}
    candidates = [_candidate(c) for c in remote]
    known = [ExistingCustomer.from_customer(c) for c in existing.values()]
    # Phones and postcodes written without a country are read in the company's country.
    region = company_country([c.address for c in remote]
                             + [c.billing_address for c in existing.values()])
    matches = find_duplicates(candidates, known, default_region=region)
    by_candidate: dict[int, list[dict[str, Any]]] = {}
    for m in matches:
        target = existing[m.existing_id]
        by_candidate.setdefault(m.candidate_index, []).append({
            "blueclerk_id": m.existing_id, "display_name": target.display_name,
            "score": m.score, "tier": m.tier, "reasons": list(m.reasons),
            "already_linked": m.existing_id in linked_ids,
        })
    rows = []
    for i, c in enumerate(remote):
        suggestion = suggest_customer_type(candidates[i])
        linked_to = linked_by_provider.get(c.id)
        duplicates = by_candidate.get(i, [])
        if linked_to is not None:
            duplicates = [{"blueclerk_id": linked_to, "display_name":
                           existing[linked_to].display_name if linked_to in existing else None,
                           "score": 1.0, "tier": "likely",
                           "reasons": [f"already linked to BlueClerk customer {linked_to}; "
                                       "importing again changes nothing"],
                           "already_linked": True}]
        rows.append({**_customer_json(c), "suggested_type": suggestion.customer_type,
                     "confidence": round(suggestion.confidence, 4),
                     "reasons": list(suggestion.reasons), "linked_to": linked_to,
                     "duplicates": duplicates})
    return {"account_id": account_id, "provider": info.provider, "customers": rows,
            "customer_types": list(CUSTOMER_TYPES)}


@dataclass(frozen=True, slots=True)
class Selection:
    """One row the user chose: import it as new, or link it to an existing record."""

    provider_id: str
    action: str = "import"  # import | link
    link_to: str | None = None
    customer_type: str | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Selection:
        provider_id = raw.get("provider_id")
        if not isinstance(provider_id, str) or not provider_id:
            raise ControlError("invalid_selection", "every selection needs a provider_id "
                               "(the id shown in the list)", 400)
        action = raw.get("action") or ("link" if raw.get("link_to") else "import")
        if action not in ("import", "link"):
            raise ControlError("invalid_selection", f"action {action!r} for {provider_id}: "
                               "use import (create it in BlueClerk) or link (match an existing "
                               "record)", 400)
        link_to = raw.get("link_to")
        if action == "link" and not link_to:
            raise ControlError("invalid_selection", f"linking {provider_id} needs link_to: the "
                               "BlueClerk id of the existing record", 400)
        customer_type = raw.get("customer_type")
        if customer_type is not None and customer_type not in CUSTOMER_TYPES:
            raise ControlError("invalid_customer_type", f"customer_type {customer_type!r} for "
                               f"{provider_id}: choose {', '.join(CUSTOMER_TYPES)}", 400)
        return cls(provider_id, action, link_to if action == "link" else None, customer_type)


def _selections(raw: Sequence[Mapping[str, Any]]) -> list[Selection]:
    parsed = [Selection.parse(r) for r in raw]
    if not parsed:
        raise ControlError("nothing_selected", "select at least one record, or skip the step",
                           400)
    seen: set[str] = set()
    for sel in parsed:
        if sel.provider_id in seen:
            raise ControlError("invalid_selection", f"{sel.provider_id} is selected twice", 400)
        seen.add(sel.provider_id)
    return parsed


def _inbound_event(ctx: ControlContext, s: Session, info: ConnectionInfo, entity_type: str,
                   provider_id: str, entity_id: str, operation: str,
                   record: dict[str, Any], details: dict[str, str]) -> None:
    changed_at = now(ctx)
    add_change_event(
        s, ctx.services.codec,
        change_id=change_id_for(info.account_id, info.provider, entity_type, provider_id,
                                changed_at),
        account_id=info.account_id, provider=info.provider, entity_type=entity_type,
        provider_id=provider_id, entity_id=entity_id, operation=operation,
        changed_at=changed_at, details=details,
        customer=record if entity_type == "customer" else None,
        item=record if entity_type == "item" else None)


def _check_link_target(s: Session, info: ConnectionInfo, entity_type: str, target: str,
                       provider_id: str, known: Iterable[str]) -> None:
    if target not in set(known):
        raise ControlError(f"unknown_{entity_type}", f"there is no BlueClerk {entity_type} "
                           f"{target!r} to link {provider_id} to; pick one of the suggested "
                           "matches or import it as new", 404)
    link = repo.get_link(s, info, entity_type, target)
    if link is not None and link.provider_id != provider_id:
        raise ControlError("already_linked", f"BlueClerk {entity_type} {target} is already "
                           f"linked to {info.provider} record {link.provider_id}; import "
                           f"{provider_id} as new instead", 409)


def import_customers(ctx: ControlContext, account_id: str,
                     selections: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Step 1: import or link the selected customers; never creates a record twice."""
    info = active_connection(ctx, account_id)
    chosen = _selections(selections)
    adapter = adapter_for(ctx, info)
    remote = {c.id: c for c in call_provider(ctx, info, "listing customers",
                                              adapter.list_customers)}
    for sel in chosen:
        if sel.provider_id not in remote:
            raise ControlError("unknown_record", f"{info.provider} has no customer "
                               f"{sel.provider_id!r}; refresh the list and select again", 404)
    result: dict[str, list[Any]] = {"imported": [], "linked": [], "unchanged": []}
    with ctx.services.db.transaction() as s:
        existing: dict[str, Customer] = decode_snapshots(ctx, s, account_id, "customer")
        by_provider = {lk.provider_id: lk.entity_id
                       for lk in company_links(s, info, "customer")}
        row, state = load_progress(s, account_id)
        for sel in chosen:
            c = remote[sel.provider_id]
            if sel.provider_id in by_provider:
                result["unchanged"].append({"provider_id": c.id,
                                            "blueclerk_id": by_provider[c.id],
                                            "reason": "already linked"})
                continue
            suggestion = suggest_customer_type(_candidate(c))
            ctype = sel.customer_type or suggestion.customer_type
            if sel.action == "link":
                assert sel.link_to is not None
                _check_link_target(s, info, "customer", sel.link_to, c.id, existing)
                entity_id, operation = sel.link_to, "linked"
            else:
                entity_id, operation = import_id(info.provider, c.id), "imported"
            repo.save_link(s, info, "customer", entity_id, c.id, None, 0, None)
            by_provider[c.id] = entity_id
            snapshot = Customer(id=entity_id, display_name=c.display_name,
                                given_name=c.given_name, family_name=c.family_name,
                                company_name=c.company_name, email=c.email, phone=c.phone,
                                billing_address=c.address, customer_type=ctype,
                                active=c.active)
            _inbound_event(ctx, s, info, "customer", c.id, entity_id, operation,
                           asdict(snapshot), {"source": "setup_wizard",
                                              "suggested_type": suggestion.customer_type,
                                              "confidence": f"{suggestion.confidence:.4f}"})
            kind = "imported" if operation == "imported" else "linked"
            state[kind]["customer"][entity_id] = c.id
            result[kind].append({"provider_id": c.id, "blueclerk_id": entity_id,
                                 "customer_type": ctype})
        mark_step(ctx, state, "customers", "done")
        save_progress(ctx, row, state)
    published = ctx.publish()
    return {"account_id": account_id, "provider": info.provider, **result,
            "events_published": published, "progress": progress_view(state)}


# --------------------------------------------------------------------------- step 2: items


def _norm(text: str | None) -> str:
    return " ".join((text or "").casefold().split())


def _item_matches(item: RemoteItem, existing: Mapping[str, Item]) -> list[dict[str, Any]]:
    found: list[tuple[float, str, dict[str, Any]]] = []
    for bc in existing.values():
        reasons = []
        if item.sku and bc.sku and _norm(item.sku) == _norm(bc.sku):
            reasons.append(f"same SKU {item.sku!r}")
        if _norm(item.name) and _norm(item.name) == _norm(bc.name):
            reasons.append(f"same name {item.name!r}")
        if reasons:
            score = 1.0 if len(reasons) == 2 else 0.8
            found.append((-score, bc.id, {"blueclerk_id": bc.id, "name": bc.name,
                                          "reasons": reasons, "score": score}))
    return [match for *_, match in sorted(found, key=lambda f: (f[0], f[1]))]


def list_items(ctx: ControlContext, account_id: str) -> dict[str, Any]:
    """Step 2: the provider's services and items, with matching BlueClerk items."""
    info = active_connection(ctx, account_id)
    adapter = adapter_for(ctx, info)
    remote: list[RemoteItem] = call_provider(ctx, info, "listing items", adapter.list_items)
    with ctx.services.db.transaction() as s:
        existing: dict[str, Item] = decode_snapshots(ctx, s, account_id, "item")
        linked = {lk.provider_id: lk.entity_id
                  for lk in company_links(s, info, "item")}
    rows = [{"provider_id": i.id, "name": i.name, "sku": i.sku, "description": i.description,
             "unit_price": str(i.unit_price), "income_account_id": i.income_account_id,
             "active": i.active, "linked_to": linked.get(i.id),
             "matches": _item_matches(i, existing)} for i in remote]
    return {"account_id": account_id, "provider": info.provider, "items": rows,
            "blueclerk_items": [{"blueclerk_id": b.id, "name": b.name, "sku": b.sku}
                                for b in existing.values()]}


def import_items(ctx: ControlContext, account_id: str,
                 selections: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Step 2: import or link the selected items. A link makes later BlueClerk item events
    update that provider item; an item's own income account becomes its mapping."""
    info = active_connection(ctx, account_id)
    chosen = _selections(selections)
    adapter = adapter_for(ctx, info)
    remote = {i.id: i for i in call_provider(ctx, info, "listing items", adapter.list_items)}
    for sel in chosen:
        if sel.provider_id not in remote:
            raise ControlError("unknown_record", f"{info.provider} has no item "
                               f"{sel.provider_id!r}; refresh the list and select again", 404)
    accounts: dict[str, str] = {}
    if any(remote[sel.provider_id].income_account_id for sel in chosen):
        accounts = {a.id: a.name for a in call_provider(
            ctx, info, "listing income accounts", adapter.list_income_accounts)}
    result: dict[str, list[Any]] = {"imported": [], "linked": [], "unchanged": []}
    newly_mapped: list[str] = []
    with ctx.services.db.transaction() as s:
        existing: dict[str, Item] = decode_snapshots(ctx, s, account_id, "item")
        by_provider = {lk.provider_id: lk.entity_id
                       for lk in company_links(s, info, "item")}
        row, state = load_progress(s, account_id)
        for sel in chosen:
            item = remote[sel.provider_id]
            if item.id in by_provider:
                result["unchanged"].append({"provider_id": item.id,
                                            "blueclerk_id": by_provider[item.id],
                                            "reason": "already linked"})
                continue
            if sel.action == "link":
                assert sel.link_to is not None
                _check_link_target(s, info, "item", sel.link_to, item.id, existing)
                entity_id, operation = sel.link_to, "linked"
            else:
                entity_id, operation = import_id(info.provider, item.id), "imported"
            repo.save_link(s, info, "item", entity_id, item.id, None, 0, None)
            by_provider[item.id] = entity_id
            if item.income_account_id and repo.get_mapping(s, account_id, entity_id) is None:
                s.add(IncomeAccountMapping(
                    account_id=account_id, item_id=entity_id,
                    provider_account_id=item.income_account_id,
                    provider_account_name=accounts.get(item.income_account_id)))
                newly_mapped.append(entity_id)
            snapshot = Item(id=entity_id, name=item.name, sku=item.sku,
                            description=item.description,
                            unit_price=item.unit_price.quantize(_PRICE_SCALE),
                            active=item.active)
            _inbound_event(ctx, s, info, "item", item.id, entity_id, operation,
                           asdict(snapshot), {"source": "setup_wizard"})
            kind = "imported" if operation == "imported" else "linked"
            state[kind]["item"][entity_id] = item.id
            state["item_names"][entity_id] = item.name
            result[kind].append({"provider_id": item.id, "blueclerk_id": entity_id,
                                 "income_account_id": item.income_account_id})
        mark_step(ctx, state, "items", "done")
        save_progress(ctx, row, state)
    published = ctx.publish()
    redriven = redrive_mappings(ctx, account_id, newly_mapped)
    return {"account_id": account_id, "provider": info.provider, **result,
            "mapped_from_provider": newly_mapped, "events_published": published,
            "redriven": redriven, "progress": progress_view(state)}


