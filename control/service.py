"""The control plane's service functions: the wizard, mappings, settings, Sync Now,
disconnect, status and dead-letter replay. The HTTP API and the CLI both call these.

Every function takes a `ControlContext` (the wired services plus the Kafka side, built on
first use) and plain values, and returns plain JSON-able dicts; errors the user can act
on are `ControlError(code, message, http_status)`. Database writes that belong together
(links, mappings, progress and the inbound events announcing them) commit in one
transaction; the inbound events are then published from the outbox.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from consumers.engine import SyncEngine
from control.wizard.customer_types import (
    CUSTOMER_TYPES,
    ImportCandidate,
    suggest_customer_type,
)
from control.wizard.duplicates import ExistingCustomer, find_duplicates
from producers.inbound_changes import add_change_event, change_id_for
from providers.errors import ProviderError, ReconnectRequired
from providers.port import AccountingProvider, IncomeAccount, RemoteCustomer, RemoteItem
from schemas.error_codes import ADVICE, ErrorCode
from schemas.events import event_from_avro
from schemas.records import Customer, Item
from schemas.status import SyncStatusEvent
from service.bootstrap import Services
from state import repository as repo
from state.connections import ConnectionInfo
from state.models import (
    Connection,
    DeadLetter,
    EntityLink,
    IncomeAccountMapping,
    OutboxMessage,
    ParkedEvent,
    ProcessedEvent,
    Snapshot,
    SyncSettings,
    WizardProgress,
)

__all__ = [
    "SETTINGS_FIELDS",
    "WIZARD_STEPS",
    "ControlContext",
    "ControlError",
    "KafkaSide",
    "close_wizard",
    "disconnect",
    "get_settings",
    "import_customers",
    "import_items",
    "income_accounts",
    "list_customers",
    "list_items",
    "map_all_unmapped",
    "map_item",
    "reconnected",
    "replay_dead_letters",
    "skip_step",
    "start_wizard",
    "status",
    "summary",
    "sync_now",
    "update_settings",
    "wizard_progress",
]

log = structlog.get_logger("control")

WIZARD_STEPS = ("customers", "items", "accounts", "settings", "summary")
SETTINGS_FIELDS = ("sync_customers", "sync_items", "sync_invoices", "sync_payments",
                   "auto_sync")
_ERROR_STATUSES = ("failed", "dead_lettered", "waiting_dependency")
_PRICE_SCALE = Decimal("0.0001")


class ControlError(Exception):
    """A request the control plane refuses, with a stable code and what to do about it."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status

    def to_json(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


class KafkaSide:
    """The engine (with its Kafka dead-letter sink) and the outbox publisher, built on first
    use so read-only commands need no broker."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._lock = threading.Lock()
        self._producer: Any = None
        self._engine: SyncEngine | None = None

    def _ensure_producer(self) -> Any:
        if self._producer is None:
            bootstrap = self._services.settings.kafka_bootstrap
            if not bootstrap:
                raise ControlError("kafka_unavailable", "KAFKA_BOOTSTRAP_SERVERS is not set; "
                                   "the control plane needs the broker to sync", 503)
            from producers.kafka import make_producer

            self._producer = make_producer(bootstrap)
        return self._producer

    def engine(self) -> SyncEngine:
        with self._lock:
            if self._engine is None:
                from producers.dead_letters import KafkaDeadLetterSink
                from service.bootstrap import build_engine

                sink = KafkaDeadLetterSink(self._ensure_producer(),
                                           self._services.settings.topics.dead_letter)
                self._engine = build_engine(self._services, sink)
            return self._engine

    def publish_outbox(self) -> int:
        from producers.outbox import OutboxPublisher

        with self._lock:
            producer = self._ensure_producer()
        return OutboxPublisher(self._services.db, producer,
                               self._services.settings.topics).publish_all()

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(10)


@dataclass
class ControlContext:
    services: Services
    engine: Callable[[], SyncEngine]
    publish_outbox: Callable[[], int] | None = None
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))

    @classmethod
    def with_kafka(cls, services: Services) -> tuple[ControlContext, KafkaSide]:
        side = KafkaSide(services)
        return cls(services, side.engine, side.publish_outbox), side

    def publish(self) -> bool:
        """Deliver pending outbox rows now; on failure they wait for the worker's publisher."""
        if self.publish_outbox is None:
            return False
        try:
            self.publish_outbox()
        except Exception as exc:  # the rows are committed; the worker delivers them later
            log.warning("outbox_publish_deferred", error=str(exc))
            return False
        return True


# --------------------------------------------------------------------------- helpers


def _active(ctx: ControlContext, account_id: str) -> ConnectionInfo:
    info = ctx.services.connections.get(account_id)
    if info is None:
        raise ControlError("not_connected", "this account has no accounting system connected; "
                           "connect QuickBooks Online, Xero or FreshBooks first", 409)
    if info.status == "disconnected":
        raise ControlError("not_connected", f"the {info.provider} connection was disconnected; "
                           "connect again to continue", 409)
    if info.status == "reconnect_required":
        raise ControlError("reconnect_required", f"the {info.provider} connection needs to be "
                           f"renewed ({info.status_reason or 'the grant was revoked or expired'}"
                           "); reconnect from Settings > Integrations", 409)
    return info


def _adapter(ctx: ControlContext, info: ConnectionInfo) -> AccountingProvider:
    return ctx.services.providers.adapter(info)


def _call_provider(ctx: ControlContext, info: ConnectionInfo, what: str,
                   fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except ReconnectRequired as exc:
        ctx.services.connections.set_status(info.account_id, "reconnect_required", str(exc))
        raise ControlError("reconnect_required", f"{info.provider} refused the stored grant "
                           f"while {what} ({exc}); reconnect from Settings > Integrations",
                           409) from exc
    except ProviderError as exc:
        advice = ADVICE.get(exc.code, "try again in a few minutes")
        status = 502 if exc.transient else 400
        raise ControlError(exc.code.value, f"{info.provider} failed while {what}: {exc}. "
                           f"{advice}", status) from exc


def _decode_snapshots(ctx: ControlContext, s: Session, account_id: str,
                      entity_type: str) -> dict[str, Any]:
    rows = s.execute(select(Snapshot).where(Snapshot.account_id == account_id,
                                            Snapshot.entity_type == entity_type)).scalars()
    out: dict[str, Any] = {}
    for row in rows:
        try:
            decoded = ctx.services.codec.decode(row.payload)
            out[row.entity_id] = event_from_avro(decoded.schema_name, decoded.value).record
        except Exception as exc:  # a snapshot the engine could store but not read back
            log.warning("snapshot_unreadable", entity_id=row.entity_id, error=str(exc))
    return out


def _links(s: Session, account_id: str, entity_type: str, provider: str | None = None
           ) -> list[EntityLink]:
    query = select(EntityLink).where(EntityLink.account_id == account_id,
                                     EntityLink.entity_type == entity_type)
    if provider is not None:
        query = query.where(EntityLink.provider == provider)
    return list(s.execute(query).scalars())


def _import_id(provider: str, provider_id: str) -> str:
    return f"imp-{provider}-{provider_id}"


def _now(ctx: ControlContext) -> dt.datetime:
    return ctx.clock()


# --------------------------------------------------------------------------- wizard progress


def _empty_progress() -> dict[str, Any]:
    return {"steps": {step: "pending" for step in WIZARD_STEPS}, "closed": False, "runs": 0,
            "imported": {"customer": {}, "item": {}}, "linked": {"customer": {}, "item": {}},
            "item_names": {}, "mapped_by_wizard": {}, "updated": {}}


def _parse_progress(row: WizardProgress | None) -> dict[str, Any]:
    state = _empty_progress()
    stored = json.loads(row.state or "{}") if row is not None else {}
    for key, value in stored.items():
        if isinstance(value, dict) and isinstance(state.get(key), dict):
            state[key].update(value)
        else:
            state[key] = value
    return state


def _read_progress(s: Session, account_id: str) -> dict[str, Any]:
    return _parse_progress(s.get(WizardProgress, account_id))


def _load_progress(s: Session, account_id: str) -> tuple[WizardProgress, dict[str, Any]]:
    """The progress row (created when missing) and its state, for a change."""
    row = s.get(WizardProgress, account_id)
    if row is None:
        row = WizardProgress(account_id=account_id, state="{}")
        s.add(row)
    return row, _parse_progress(row)


def _save_progress(ctx: ControlContext, row: WizardProgress, state: dict[str, Any]) -> None:
    row.state = json.dumps(state, sort_keys=True)
    row.updated_at = _now(ctx)


def _mark_step(ctx: ControlContext, state: dict[str, Any], step: str, value: str) -> None:
    state["steps"][step] = value
    state["updated"][step] = _now(ctx).isoformat()


def _progress_view(state: Mapping[str, Any]) -> dict[str, Any]:
    steps = dict(state["steps"])
    next_step = next((st for st in WIZARD_STEPS if steps.get(st) == "pending"), None)
    return {"steps": steps, "next_step": next_step, "complete": next_step is None,
            "closed": bool(state.get("closed")), "runs": int(state.get("runs", 0)),
            "counts": {
                "customers_imported": len(state["imported"]["customer"]),
                "customers_linked": len(state["linked"]["customer"]),
                "items_imported": len(state["imported"]["item"]),
                "items_linked": len(state["linked"]["item"]),
                "items_mapped": len(state["mapped_by_wizard"]),
            }}


def _step(step: str) -> str:
    if step not in WIZARD_STEPS:
        raise ControlError("unknown_step", f"unknown wizard step {step!r}; the steps are "
                           f"{', '.join(WIZARD_STEPS)}", 404)
    return step


def wizard_progress(ctx: ControlContext, account_id: str) -> dict[str, Any]:
    with ctx.services.db.transaction() as s:
        state = _read_progress(s, account_id)
    return {"account_id": account_id, **_progress_view(state)}


def start_wizard(ctx: ControlContext, account_id: str) -> dict[str, Any]:
    """Open (or re-open) the wizard; progress from earlier runs is kept."""
    _active(ctx, account_id)
    with ctx.services.db.transaction() as s:
        row, state = _load_progress(s, account_id)
        state["closed"] = False
        state["runs"] = int(state.get("runs", 0)) + 1
        if all(v != "pending" for v in state["steps"].values()):
            # A completed wizard run again: every step is offered again, nothing is lost.
            state["steps"] = {step: "pending" for step in WIZARD_STEPS}
        _save_progress(ctx, row, state)
    return {"account_id": account_id, **_progress_view(state)}


def skip_step(ctx: ControlContext, account_id: str, step: str) -> dict[str, Any]:
    _step(step)
    with ctx.services.db.transaction() as s:
        row, state = _load_progress(s, account_id)
        if state["steps"].get(step) != "done":
            _mark_step(ctx, state, step, "skipped")
        _save_progress(ctx, row, state)
    return {"account_id": account_id, **_progress_view(state)}


def close_wizard(ctx: ControlContext, account_id: str) -> dict[str, Any]:
    with ctx.services.db.transaction() as s:
        row, state = _load_progress(s, account_id)
        state["closed"] = True
        _save_progress(ctx, row, state)
    return {"account_id": account_id, **_progress_view(state)}


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


def list_customers(ctx: ControlContext, account_id: str) -> dict[str, Any]:
    """Step 1: the provider's customers with a suggested type and possible duplicates."""
    info = _active(ctx, account_id)
    adapter = _adapter(ctx, info)
    remote: list[RemoteCustomer] = _call_provider(ctx, info, "listing customers",
                                                  adapter.list_customers)
    with ctx.services.db.transaction() as s:
        existing: dict[str, Customer] = _decode_snapshots(ctx, s, account_id, "customer")
        links = _links(s, account_id, "customer")
    linked_by_provider = {lk.provider_id: lk.entity_id for lk in links
                          if lk.provider == info.provider}
    linked_ids = {lk.entity_id for lk in links if lk.provider == info.provider}
    candidates = [_candidate(c) for c in remote]
    known = [ExistingCustomer.from_customer(c) for c in existing.values()]
    matches = find_duplicates(candidates, known)
    by_candidate: dict[int, list[dict[str, Any]]] = {}
    for m in matches:
        target = existing[m.existing_id]
        by_candidate.setdefault(m.candidate_index, []).append({
            "blueclerk_id": m.existing_id, "display_name": target.display_name,
            "score": m.score, "reasons": list(m.reasons),
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
                           "score": 1.0, "reasons": [f"already linked to BlueClerk customer "
                                                     f"{linked_to}; importing again changes "
                                                     "nothing"], "already_linked": True}]
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
    changed_at = _now(ctx)
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
    link = repo.get_link(s, info.account_id, entity_type, target)
    if link is not None and link.provider == info.provider and link.provider_id != provider_id:
        raise ControlError("already_linked", f"BlueClerk {entity_type} {target} is already "
                           f"linked to {info.provider} record {link.provider_id}; import "
                           f"{provider_id} as new instead", 409)


def import_customers(ctx: ControlContext, account_id: str,
                     selections: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Step 1: import or link the selected customers; never creates a record twice."""
    info = _active(ctx, account_id)
    chosen = _selections(selections)
    adapter = _adapter(ctx, info)
    remote = {c.id: c for c in _call_provider(ctx, info, "listing customers",
                                              adapter.list_customers)}
    for sel in chosen:
        if sel.provider_id not in remote:
            raise ControlError("unknown_record", f"{info.provider} has no customer "
                               f"{sel.provider_id!r}; refresh the list and select again", 404)
    result: dict[str, list[Any]] = {"imported": [], "linked": [], "unchanged": []}
    with ctx.services.db.transaction() as s:
        existing: dict[str, Customer] = _decode_snapshots(ctx, s, account_id, "customer")
        by_provider = {lk.provider_id: lk.entity_id
                       for lk in _links(s, account_id, "customer", info.provider)}
        row, state = _load_progress(s, account_id)
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
                entity_id, operation = _import_id(info.provider, c.id), "imported"
            repo.save_link(s, account_id, "customer", entity_id, info.provider, c.id, None, 0,
                           None)
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
        _mark_step(ctx, state, "customers", "done")
        _save_progress(ctx, row, state)
    published = ctx.publish()
    return {"account_id": account_id, "provider": info.provider, **result,
            "events_published": published, "progress": _progress_view(state)}


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
    info = _active(ctx, account_id)
    adapter = _adapter(ctx, info)
    remote: list[RemoteItem] = _call_provider(ctx, info, "listing items", adapter.list_items)
    with ctx.services.db.transaction() as s:
        existing: dict[str, Item] = _decode_snapshots(ctx, s, account_id, "item")
        linked = {lk.provider_id: lk.entity_id
                  for lk in _links(s, account_id, "item", info.provider)}
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
    info = _active(ctx, account_id)
    chosen = _selections(selections)
    adapter = _adapter(ctx, info)
    remote = {i.id: i for i in _call_provider(ctx, info, "listing items", adapter.list_items)}
    for sel in chosen:
        if sel.provider_id not in remote:
            raise ControlError("unknown_record", f"{info.provider} has no item "
                               f"{sel.provider_id!r}; refresh the list and select again", 404)
    accounts: dict[str, str] = {}
    if any(remote[sel.provider_id].income_account_id for sel in chosen):
        accounts = {a.id: a.name for a in _call_provider(
            ctx, info, "listing income accounts", adapter.list_income_accounts)}
    result: dict[str, list[Any]] = {"imported": [], "linked": [], "unchanged": []}
    newly_mapped: list[str] = []
    with ctx.services.db.transaction() as s:
        existing: dict[str, Item] = _decode_snapshots(ctx, s, account_id, "item")
        by_provider = {lk.provider_id: lk.entity_id
                       for lk in _links(s, account_id, "item", info.provider)}
        row, state = _load_progress(s, account_id)
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
                entity_id, operation = _import_id(info.provider, item.id), "imported"
            repo.save_link(s, account_id, "item", entity_id, info.provider, item.id, None, 0,
                           None)
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
        _mark_step(ctx, state, "items", "done")
        _save_progress(ctx, row, state)
    published = ctx.publish()
    redriven = _redrive_mappings(ctx, account_id, newly_mapped)
    return {"account_id": account_id, "provider": info.provider, **result,
            "mapped_from_provider": newly_mapped, "events_published": published,
            "redriven": redriven, "progress": _progress_view(state)}


# --------------------------------------------------------------------------- step 3: accounts


def _known_items(ctx: ControlContext, s: Session, account_id: str, provider: str,
                 state: Mapping[str, Any]) -> dict[str, str | None]:
    """BlueClerk items this account knows (snapshots and links), id -> name."""
    known: dict[str, str | None] = {}
    for lk in _links(s, account_id, "item", provider):
        known[lk.entity_id] = state["item_names"].get(lk.entity_id)
    for item_id, item in _decode_snapshots(ctx, s, account_id, "item").items():
        known[item_id] = item.name
    return known


def _mappings(s: Session, account_id: str) -> dict[str, IncomeAccountMapping]:
    return {m.item_id: m for m in s.execute(select(IncomeAccountMapping).where(
        IncomeAccountMapping.account_id == account_id)).scalars()}


def income_accounts(ctx: ControlContext, account_id: str) -> dict[str, Any]:
    """Step 3: the provider's income accounts, the current mappings and what is unmapped."""
    info = _active(ctx, account_id)
    adapter = _adapter(ctx, info)
    accounts: list[IncomeAccount] = _call_provider(ctx, info, "listing income accounts",
                                                   adapter.list_income_accounts)
    with ctx.services.db.transaction() as s:
        state = _read_progress(s, account_id)
        known = _known_items(ctx, s, account_id, info.provider, state)
        mapped = _mappings(s, account_id)
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
    adapter = _adapter(ctx, info)
    accounts: list[IncomeAccount] = _call_provider(ctx, info, "listing income accounts",
                                                   adapter.list_income_accounts)
    for a in accounts:
        if account in (a.id, a.code):
            return a
    names = ", ".join(f"{a.id} ({a.name})" for a in accounts[:10])
    raise ControlError("unknown_income_account", f"{info.provider} has no income account "
                       f"{account!r}; choose one of: {names}", 400)


def _redrive_mappings(ctx: ControlContext, account_id: str, item_ids: Sequence[str]
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
    return _count_statuses(statuses)


def _count_statuses(statuses: Iterable[SyncStatusEvent]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for st in statuses:
        counts[st.status.value] = counts.get(st.status.value, 0) + 1
    return counts


def _save_mappings(ctx: ControlContext, info: ConnectionInfo, item_ids: Sequence[str],
                   account: IncomeAccount) -> dict[str, Any]:
    with ctx.services.db.transaction() as s:
        row, state = _load_progress(s, info.account_id)
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
        _mark_step(ctx, state, "accounts", "done")
        _save_progress(ctx, row, state)
    redriven = _redrive_mappings(ctx, info.account_id, item_ids)
    return {"account_id": info.account_id, "income_account": {"id": account.id,
                                                              "name": account.name},
            "mapped": list(item_ids), "redriven": redriven, "progress": _progress_view(state)}


def map_item(ctx: ControlContext, account_id: str, item_id: str, income_account: str
             ) -> dict[str, Any]:
    """Map one item (new or changed mapping) and re-drive what waited for it."""
    info = _active(ctx, account_id)
    account = _income_account(ctx, info, income_account)
    with ctx.services.db.transaction() as s:
        state = _read_progress(s, account_id)
        known = _known_items(ctx, s, account_id, info.provider, state)
    if item_id not in known:
        raise ControlError("unknown_item", f"BlueClerk item {item_id!r} is not known to the "
                           "sync yet (no event and no import); import it in step 2 or map it "
                           "after its first change event", 404)
    return _save_mappings(ctx, info, [item_id], account)


def map_all_unmapped(ctx: ControlContext, account_id: str, income_account: str
                     ) -> dict[str, Any]:
    """Map every known item without a mapping to one income account."""
    info = _active(ctx, account_id)
    account = _income_account(ctx, info, income_account)
    with ctx.services.db.transaction() as s:
        state = _read_progress(s, account_id)
        known = _known_items(ctx, s, account_id, info.provider, state)
        mapped = set(_mappings(s, account_id))
    return _save_mappings(ctx, info, sorted(set(known) - mapped), account)


# --------------------------------------------------------------------------- step 4: settings


def _settings_json(row: SyncSettings | None) -> dict[str, bool]:
    if row is None:
        return {name: True for name in SETTINGS_FIELDS}
    return {name: bool(getattr(row, name)) for name in SETTINGS_FIELDS}


def get_settings(ctx: ControlContext, account_id: str) -> dict[str, Any]:
    with ctx.services.db.transaction() as s:
        values = _settings_json(repo.get_settings(s, account_id))
    return {"account_id": account_id, **values}


def update_settings(ctx: ControlContext, account_id: str, changes: Mapping[str, Any]
                    ) -> dict[str, Any]:
    """Step 4 (and any time later): change what syncs and whether it syncs by itself."""
    unknown = sorted(set(changes) - set(SETTINGS_FIELDS))
    if unknown:
        raise ControlError("unknown_setting", f"unknown setting(s) {', '.join(unknown)}; the "
                           f"settings are {', '.join(SETTINGS_FIELDS)}", 400)
    for name, value in changes.items():
        if not isinstance(value, bool):
            raise ControlError("invalid_setting", f"{name} must be true or false", 400)
    _active(ctx, account_id)
    with ctx.services.db.transaction() as s:
        row = repo.get_settings(s, account_id)
        if row is None:
            row = SyncSettings(account_id=account_id, **_settings_json(None))
            s.add(row)
        was_manual = not row.auto_sync
        for name, value in changes.items():
            setattr(row, name, value)
        values = _settings_json(row)
        progress_row, state = _load_progress(s, account_id)
        _mark_step(ctx, state, "settings", "done")
        _save_progress(ctx, progress_row, state)
    redriven: dict[str, int] = {}
    if was_manual and values["auto_sync"]:
        # Turning auto-sync back on sends what waited for Sync Now, in order.
        redriven = _sync_parked(ctx, account_id)
    return {"account_id": account_id, **values, "redriven": redriven,
            "recommended": {"auto_sync": True}, "progress": _progress_view(state)}


# --------------------------------------------------------------------------- step 5: summary


def summary(ctx: ControlContext, account_id: str) -> dict[str, Any]:
    """Step 5: what was imported, linked and mapped, and what is still unmapped."""
    info = _active(ctx, account_id)
    with ctx.services.db.transaction() as s:
        row, state = _load_progress(s, account_id)
        known = _known_items(ctx, s, account_id, info.provider, state)
        mapped = _mappings(s, account_id)
        settings = _settings_json(repo.get_settings(s, account_id))
        links = {t: len(_links(s, account_id, t, info.provider)) for t in ("customer", "item")}
        _mark_step(ctx, state, "summary", "done")
        _save_progress(ctx, row, state)
        unmapped = [{"item_id": i, "item_name": n} for i, n in sorted(known.items())
                    if i not in mapped]
        mapped_view = [{"item_id": m.item_id, "item_name": known.get(m.item_id),
                        "income_account_id": m.provider_account_id,
                        "income_account_name": m.provider_account_name}
                       for m in sorted(mapped.values(), key=lambda m: m.item_id)]

    def pairs(kind: str, entity: str) -> list[dict[str, str]]:
        return [{"blueclerk_id": k, "provider_id": v}
                for k, v in sorted(state[kind][entity].items())]

    return {
        "account_id": account_id, "provider": info.provider, "tenant_id": info.tenant_id,
        "customers": {"imported": pairs("imported", "customer"),
                      "linked": pairs("linked", "customer"), "links_total": links["customer"]},
        "items": {"imported": pairs("imported", "item"), "linked": pairs("linked", "item"),
                  "links_total": links["item"]},
        "mappings": mapped_view, "unmapped": unmapped, "settings": settings,
        "progress": _progress_view(state),
    }


# --------------------------------------------------------------------------- operations


def _sync_parked(ctx: ControlContext, account_id: str) -> dict[str, int]:
    with ctx.services.db.transaction() as s:
        waiting = s.execute(select(func.count()).select_from(ParkedEvent).where(
            ParkedEvent.account_id == account_id,
            ParkedEvent.reason == "pending_manual")).scalar_one()
    if not waiting:
        return {}
    statuses = ctx.engine().drive_parked(account_id, {"pending_manual"})
    ctx.publish()
    return _count_statuses(statuses)


def sync_now(ctx: ControlContext, account_id: str) -> dict[str, Any]:
    """Send every change that waited for Sync Now (auto-sync off), in arrival order."""
    _active(ctx, account_id)
    with ctx.services.db.transaction() as s:
        settings = _settings_json(repo.get_settings(s, account_id))
    counts = _sync_parked(ctx, account_id)
    with ctx.services.db.transaction() as s:
        left = s.execute(select(func.count()).select_from(ParkedEvent).where(
            ParkedEvent.account_id == account_id,
            ParkedEvent.reason == "pending_manual")).scalar_one()
    return {"account_id": account_id, "auto_sync": settings["auto_sync"], "results": counts,
            "processed": sum(counts.values()), "still_waiting": int(left)}


def reconnected(ctx: ControlContext, account_id: str) -> dict[str, int]:
    """After a reconnect: re-drive what failed with reconnect_required, in order."""
    with ctx.services.db.transaction() as s:
        waiting = list(s.execute(select(ParkedEvent.event_id).where(
            ParkedEvent.account_id == account_id,
            ParkedEvent.reason == "reconnect_required")).scalars())
        if waiting:
            # These ended `failed` (reconnect_required) and the engine re-drives only
            # parked-status events, so their failed outcome is forgotten first.
            s.execute(delete(ProcessedEvent).where(ProcessedEvent.event_id.in_(waiting),
                                                   ProcessedEvent.status == "failed"))
    if not waiting:
        return {}
    statuses = ctx.engine().drive_parked(account_id, {"reconnect_required"})
    ctx.publish()
    return _count_statuses(statuses)


def disconnect(ctx: ControlContext, account_id: str) -> dict[str, Any]:
    """Revoke the grant at the provider and stop syncing; links stay for a reconnect and
    everything already in the books stays there."""
    info = ctx.services.connections.get(account_id)
    if info is None:
        raise ControlError("not_connected", "this account has no accounting system to "
                           "disconnect", 404)
    revoked, revoke_error = False, None
    if info.status != "disconnected":
        try:
            token = ctx.services.connections.refresh_token(account_id)
            ctx.services.providers.oauth(info.provider).revoke(token)
            revoked = True
        except (ProviderError, OSError) as exc:
            # The local disconnect still happens: no further calls are made with the grant.
            revoke_error = f"{exc}; revoke the app's access in {info.provider} if it remains"
    ctx.services.connections.set_status(account_id, "disconnected", "disconnected by the user")
    ctx.services.providers.forget(account_id)
    with ctx.services.db.transaction() as s:
        links = s.execute(select(func.count()).select_from(EntityLink).where(
            EntityLink.account_id == account_id)).scalar_one()
    return {"account_id": account_id, "provider": info.provider, "status": "disconnected",
            "tokens_revoked": revoked, "revoke_error": revoke_error, "links_kept": int(links)}


def status(ctx: ControlContext, account_id: str, recent: int = 20) -> dict[str, Any]:
    """Connection health, last sync, counts by status and recent errors with advice."""
    with ctx.services.db.transaction() as s:
        conn = s.get(Connection, account_id)
        counts = dict(s.execute(
            select(OutboxMessage.status, func.count()).where(
                OutboxMessage.account_id == account_id, OutboxMessage.topic_kind == "status",
                OutboxMessage.status.is_not(None)).group_by(OutboxMessage.status)).all())
        parked = dict(s.execute(
            select(ParkedEvent.reason, func.count()).where(ParkedEvent.account_id == account_id)
            .group_by(ParkedEvent.reason)).all())
        errors = list(s.execute(
            select(OutboxMessage).where(OutboxMessage.account_id == account_id,
                                        OutboxMessage.topic_kind == "status",
                                        OutboxMessage.error_code.is_not(None),
                                        OutboxMessage.status.in_(_ERROR_STATUSES))
            .order_by(OutboxMessage.id.desc()).limit(recent)).scalars())
        dead = s.execute(select(func.count()).select_from(DeadLetter).where(
            DeadLetter.account_id == account_id, DeadLetter.replayed_at.is_(None))).scalar_one()
        settings = _settings_json(repo.get_settings(s, account_id)) if conn else None
        connection = None
        if conn is not None:
            connection = {"provider": conn.provider, "tenant_id": conn.tenant_id,
                          "status": conn.status, "status_reason": conn.status_reason,
                          "connected_at": conn.connected_at.isoformat(),
                          "last_sync_at": conn.last_sync_at.isoformat()
                          if conn.last_sync_at else None}
        health = {None: "not_connected", "active": "healthy"}.get(
            conn.status if conn else None, conn.status if conn else "not_connected")
        recent_errors = [{
            "at": e.created_at.isoformat(), "entity_type": e.entity_type,
            "entity_id": e.entity_id, "status": e.status, "error_code": e.error_code,
            "message": e.message, "what_to_do": _advice(e.error_code)} for e in errors]
    what_to_do = None
    if health == "reconnect_required":
        what_to_do = ADVICE[ErrorCode.RECONNECT_REQUIRED]
    elif health in ("not_connected", "disconnected"):
        what_to_do = ADVICE[ErrorCode.NOT_CONNECTED]
    return {"account_id": account_id, "health": health, "what_to_do": what_to_do,
            "connection": connection, "settings": settings,
            "last_sync_at": connection["last_sync_at"] if connection else None,
            "counts_by_status": {str(k): int(v) for k, v in counts.items()},
            "parked": {str(k): int(v) for k, v in parked.items()},
            "dead_letters_pending_replay": int(dead), "recent_errors": recent_errors}


def _advice(code: str | None) -> str | None:
    if code is None:
        return None
    try:
        return ADVICE.get(ErrorCode(code))
    except ValueError:
        return None


def replay_dead_letters(ctx: ControlContext, *, account_id: str | None = None,
                        record_id: int | None = None, replay_all: bool = False
                        ) -> dict[str, Any]:
    """Run dead-lettered events through the engine again (after their cause is fixed)."""
    if account_id is None and record_id is None and not replay_all:
        raise ControlError("nothing_selected", "say which dead letters to replay: an account, "
                           "a record id, or all", 400)
    with ctx.services.db.transaction() as s:
        query = select(DeadLetter).where(DeadLetter.replayed_at.is_(None))
        if account_id is not None:
            query = query.where(DeadLetter.account_id == account_id)
        if record_id is not None:
            query = query.where(DeadLetter.id == record_id)
        rows = [(d.id, d.payload) for d in s.execute(query.order_by(DeadLetter.id)).scalars()]
    if record_id is not None and not rows:
        raise ControlError("unknown_record", f"dead letter {record_id} does not exist or was "
                           "already replayed", 404)
    results: list[dict[str, Any]] = []
    engine = ctx.engine() if rows else None
    for dl_id, payload in rows:
        if engine is None or payload is None:
            results.append({"id": dl_id, "outcome": "not_replayable",
                            "message": "the dead letter kept no payload"})
            continue
        try:
            event = engine.decode(payload)
        except Exception as exc:
            results.append({"id": dl_id, "outcome": "undecodable", "message": f"{exc}; fix the "
                            "producer and publish the record again"})
            continue
        with ctx.services.db.transaction() as s:
            # The failed outcome is forgotten so the engine applies the event afresh.
            s.execute(delete(ProcessedEvent).where(
                ProcessedEvent.event_id == event.event_id,
                ProcessedEvent.status.in_(("failed", "dead_lettered"))))
        result = engine.process(event, payload, redrive=True)
        if result.retry_after_s is not None:
            results.append({"id": dl_id, "event_id": event.event_id, "outcome": "retrying",
                            "message": f"the provider is still failing; replay again in "
                            f"{result.retry_after_s:.0f}s"})
            continue
        with ctx.services.db.transaction() as s:
            row = s.get(DeadLetter, dl_id)
            if row is not None:
                row.replayed_at = _now(ctx)
        final = result.statuses[-1] if result.statuses else None
        results.append({"id": dl_id, "event_id": event.event_id,
                        "outcome": final.status.value if final else "unchanged",
                        "error_code": final.error_code.value if final and final.error_code
                        else None, "message": final.message if final else None})
    ctx.publish()
    done = [r for r in results if r["outcome"] not in ("retrying", "undecodable",
                                                       "not_replayable")]
    return {"replayed": len(done), "results": results}
