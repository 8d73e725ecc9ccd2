"""The control plane's service functions in one namespace, for the HTTP API and the CLI.

Each capability lives in its own module: connecting (`control.oauth_flow`), the wizard
(`control.wizard.progress`, `.imports`, `.summary`), income-account mappings
(`control.mappings`), sync settings (`control.sync_settings`) and operations on a
connected account (`control.operations`); `control.context` holds what they share.
"""

from __future__ import annotations

from control.context import ControlContext, ControlError, KafkaSide
from control.mappings import income_accounts, map_all_unmapped, map_item
from control.operations import (
    disconnect,
    reconnected,
    replay_dead_letters,
    status,
    sync_now,
)
from control.sync_settings import SETTINGS_FIELDS, get_settings, update_settings
from control.tax_mappings import (
    auto_match_tax_rates,
    map_all_unmapped_tax_rates,
    map_tax_rate,
    tax_rates,
)
from control.wizard.imports import import_customers, import_items, list_customers, list_items
from control.wizard.progress import (
    WIZARD_STEPS,
    close_wizard,
    skip_step,
    start_wizard,
    wizard_progress,
)
from control.wizard.summary import summary

__all__ = [
    "SETTINGS_FIELDS",
    "WIZARD_STEPS",
    "ControlContext",
    "ControlError",
    "KafkaSide",
    "auto_match_tax_rates",
    "close_wizard",
    "disconnect",
    "get_settings",
    "import_customers",
    "import_items",
    "income_accounts",
    "list_customers",
    "list_items",
    "map_all_unmapped",
    "map_all_unmapped_tax_rates",
    "map_item",
    "map_tax_rate",
    "reconnected",
    "replay_dead_letters",
    "skip_step",
    "start_wizard",
    "status",
    "summary",
    "sync_now",
    "tax_rates",
    "update_settings",
    "wizard_progress",
]
