"""Wizard step 5: what was imported, linked and mapped, and what is still unmapped.
"""

from __future__ import annotations

from typing import Any

from control.context import (
    ControlContext,
    active_connection,
    company_links,
)
from control.mappings import known_items, mappings_of
from control.sync_settings import settings_json
from control.wizard.progress import (
    load_progress,
    mark_step,
    progress_view,
    save_progress,
)
from state import repository as repo

__all__ = [
    "summary",
]

# --------------------------------------------------------------------------- step 5: summary


def summary(ctx: ControlContext, account_id: str) -> dict[str, Any]:
    """Step 5: what was imported, linked and mapped, and what is still unmapped."""
    info = active_connection(ctx, account_id)
    with ctx.services.db.transaction() as s:
        row, state = load_progress(s, account_id)
        known = known_items(ctx, s, info, state)
        mapped = mappings_of(s, account_id)
        settings = settings_json(repo.get_settings(s, account_id))
        links = {t: len(company_links(s, info, t)) for t in ("customer", "item")}
        mark_step(ctx, state, "summary", "done")
        save_progress(ctx, row, state)
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
        "progress": progress_view(state),
    }


