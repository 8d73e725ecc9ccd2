"""Operations on a connected account: Sync Now, reconnect re-drives, disconnect, status
and dead-letter replay.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select

from control.context import (
    ControlContext,
    ControlError,
    active_connection,
    advice_for,
    count_statuses,
    now,
)
from control.sync_settings import settings_json, sync_parked
from control.tax_mappings import auto_match_tax_rates
from schemas.error_codes import ADVICE, ErrorCode
from state import repository as repo
from state.connections import Connected
from state.models import (
    Connection,
    DeadLetter,
    EntityLink,
    OutboxMessage,
    ParkedEvent,
    ProcessedEvent,
)

__all__ = [
    "disconnect",
    "reconnected",
    "replay_dead_letters",
    "status",
    "sync_now",
]

_ERROR_STATUSES = ("failed", "dead_lettered", "waiting_dependency")


# --------------------------------------------------------------------------- operations



def sync_now(ctx: ControlContext, account_id: str) -> dict[str, Any]:
    """Send every change that waited for Sync Now (auto-sync off), in arrival order."""
    active_connection(ctx, account_id)
    with ctx.services.db.transaction() as s:
        settings = settings_json(repo.get_settings(s, account_id))
    counts = sync_parked(ctx, account_id)
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
            s.execute(delete(ProcessedEvent).where(ProcessedEvent.account_id == account_id,
                                                   ProcessedEvent.event_id.in_(waiting),
                                                   ProcessedEvent.status == "failed"))
    if not waiting:
        return {}
    statuses = ctx.engine().drive_parked(account_id, {"reconnect_required"})
    ctx.publish()
    return count_statuses(statuses)


def after_connect(ctx: ControlContext, connected: Connected) -> dict[str, Any]:
    """What a completed connection does next, and its description for the caller:
    a reconnect re-drives what waited for it; a new company ends what waited for the old."""
    info = connected.info
    redriven: dict[str, int] = {}
    abandoned: dict[str, int] = {}
    if connected.kind == "reconnect":
        redriven = reconnected(ctx, info.account_id)
    elif connected.kind == "new_company":
        statuses = ctx.engine().abandon_parked(
            info.account_id, ErrorCode.CONNECTION_CHANGED,
            f"the account was connected to {info.provider} company {info.tenant_id}; this "
            "change waited for the previous company and was not synced")
        ctx.publish()
        abandoned = count_statuses(statuses)
    taxes: dict[str, Any] = {}
    try:
        # BlueClerk's known tax rates meet the company's codes: the unambiguous ones are
        # mapped now (an old connection's invoices, or a reconnect); the rest wait for step 3.
        taxes = auto_match_tax_rates(ctx, info.account_id)
    except ControlError as exc:
        taxes = {"error": exc.message}
    return {"account_id": info.account_id, "provider": info.provider,
            "tenant_id": info.tenant_id, "tenant_name": info.tenant_name, "tax_rates": taxes,
            "status": info.status, "connected_at": info.connected_at.isoformat(),
            "connection": connected.kind, "reconnected": connected.kind == "reconnect",
            "redriven": redriven, "abandoned": abandoned}


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
        except Exception as exc:  # fail closed: whatever happened, the account disconnects
            revoke_error = (f"{info.provider} did not confirm the revocation "
                            f"({type(exc).__name__}: {exc}); remove the BlueClerk app's "
                            f"access in {info.provider}'s connected-apps settings")
    # Disconnected and the stored tokens deleted, whatever the provider answered.
    ctx.services.connections.disconnect(account_id, "disconnected by the user")
    ctx.services.providers.forget(account_id)
    with ctx.services.db.transaction() as s:
        links = s.execute(select(func.count()).select_from(EntityLink).where(
            EntityLink.account_id == account_id)).scalar_one()
    return {"account_id": account_id, "provider": info.provider, "status": "disconnected",
            "tokens_revoked": revoked, "revoke_error": revoke_error, "tokens_deleted": True,
            "links_kept": int(links)}


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
        settings = settings_json(repo.get_settings(s, account_id)) if conn else None
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
            "message": e.message, "what_to_do": advice_for(e.error_code)} for e in errors]
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
                ProcessedEvent.account_id == event.account_id,
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
                row.replayed_at = now(ctx)
        final = result.statuses[-1] if result.statuses else None
        results.append({"id": dl_id, "event_id": event.event_id,
                        "outcome": final.status.value if final else "unchanged",
                        "error_code": final.error_code.value if final and final.error_code
                        else None, "message": final.message if final else None})
    ctx.publish()
    done = [r for r in results if r["outcome"] not in ("retrying", "undecodable",
                                                       "not_replayable")]
    return {"replayed": len(done), "results": results}

