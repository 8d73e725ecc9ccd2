"""The setup wizard's progress: which of the five steps are done, skipped or pending,
kept across runs (start, skip, close, re-run).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from control.context import ControlContext, ControlError, active_connection, now
from state.models import WizardProgress

__all__ = [
    "WIZARD_STEPS",
    "close_wizard",
    "load_progress",
    "mark_step",
    "progress_view",
    "read_progress",
    "save_progress",
    "skip_step",
    "start_wizard",
    "wizard_progress",
]

WIZARD_STEPS = ("customers", "items", "accounts", "settings", "summary")


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


def read_progress(s: Session, account_id: str) -> dict[str, Any]:
    return _parse_progress(s.get(WizardProgress, account_id))


def load_progress(s: Session, account_id: str) -> tuple[WizardProgress, dict[str, Any]]:
    """The progress row (created when missing) and its state, for a change."""
    row = s.get(WizardProgress, account_id)
    if row is None:
        row = WizardProgress(account_id=account_id, state="{}")
        s.add(row)
    return row, _parse_progress(row)


def save_progress(ctx: ControlContext, row: WizardProgress, state: dict[str, Any]) -> None:
    row.state = json.dumps(state, sort_keys=True)
    row.updated_at = now(ctx)


def mark_step(ctx: ControlContext, state: dict[str, Any], step: str, value: str) -> None:
    state["steps"][step] = value
    state["updated"][step] = now(ctx).isoformat()


def progress_view(state: Mapping[str, Any]) -> dict[str, Any]:
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
        state = read_progress(s, account_id)
    return {"account_id": account_id, **progress_view(state)}


def start_wizard(ctx: ControlContext, account_id: str) -> dict[str, Any]:
    """Open (or re-open) the wizard; progress from earlier runs is kept."""
    active_connection(ctx, account_id)
    with ctx.services.db.transaction() as s:
        row, state = load_progress(s, account_id)
        state["closed"] = False
        state["runs"] = int(state.get("runs", 0)) + 1
        if all(v != "pending" for v in state["steps"].values()):
            # A completed wizard run again: every step is offered again, nothing is lost.
            state["steps"] = {step: "pending" for step in WIZARD_STEPS}
        save_progress(ctx, row, state)
    return {"account_id": account_id, **progress_view(state)}


def skip_step(ctx: ControlContext, account_id: str, step: str) -> dict[str, Any]:
    _step(step)
    with ctx.services.db.transaction() as s:
        row, state = load_progress(s, account_id)
        if state["steps"].get(step) != "done":
            mark_step(ctx, state, step, "skipped")
        save_progress(ctx, row, state)
    return {"account_id": account_id, **progress_view(state)}


def close_wizard(ctx: ControlContext, account_id: str) -> dict[str, Any]:
    with ctx.services.db.transaction() as s:
        row, state = load_progress(s, account_id)
        state["closed"] = True
        save_progress(ctx, row, state)
    return {"account_id": account_id, **progress_view(state)}


