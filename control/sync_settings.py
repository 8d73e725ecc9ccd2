"""Wizard step 4 and Settings > Integrations: what syncs, and whether it syncs by itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select

from control.context import ControlContext, ControlError, active_connection, count_statuses
from control.wizard.progress import (
    load_progress,
    mark_step,
    progress_view,
    save_progress,
)
from state import repository as repo
from state.models import ParkedEvent, SyncSettings

__all__ = [
    "SETTINGS_FIELDS",
    "get_settings",
    "settings_json",
    "sync_parked",
    "update_settings",
]

SETTINGS_FIELDS = ("sync_customers", "sync_items", "sync_invoices", "sync_payments",
                   "auto_sync")
# --------------------------------------------------------------------------- step 4: settings


def settings_json(row: SyncSettings | None) -> dict[str, bool]:
    if row is None:
        return {name: True for name in SETTINGS_FIELDS}
    return {name: bool(getattr(row, name)) for name in SETTINGS_FIELDS}


def get_settings(ctx: ControlContext, account_id: str) -> dict[str, Any]:
    with ctx.services.db.transaction() as s:
        values = settings_json(repo.get_settings(s, account_id))
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
    active_connection(ctx, account_id)
    with ctx.services.db.transaction() as s:
        row = repo.get_settings(s, account_id)
        if row is None:
            row = SyncSettings(account_id=account_id, **settings_json(None))
            s.add(row)
        was_manual = not row.auto_sync
        for name, value in changes.items():
            setattr(row, name, value)
        values = settings_json(row)
        progress_row, state = load_progress(s, account_id)
        mark_step(ctx, state, "settings", "done")
        save_progress(ctx, progress_row, state)
    redriven: dict[str, int] = {}
    if was_manual and values["auto_sync"]:
        # Turning auto-sync back on sends what waited for Sync Now, in order.
        redriven = sync_parked(ctx, account_id)
    return {"account_id": account_id, **values, "redriven": redriven,
            "recommended": {"auto_sync": True}, "progress": progress_view(state)}

def sync_parked(ctx: ControlContext, account_id: str) -> dict[str, int]:
    with ctx.services.db.transaction() as s:
        waiting = s.execute(select(func.count()).select_from(ParkedEvent).where(
            ParkedEvent.account_id == account_id,
            ParkedEvent.reason == "pending_manual")).scalar_one()
    if not waiting:
        return {}
    statuses = ctx.engine().drive_parked(account_id, {"pending_manual"})
    ctx.publish()
    return count_statuses(statuses)
