"""What the operations tests share: a sandbox account connected in a fresh SQLite file."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from sandbox.harness import connect_sandbox_account
from state.crypto import generate_key
from state.db import migrate

REPO = Path(__file__).resolve().parents[3]


@dataclass
class ConnectedAccount:
    account: str
    tenant: str
    db_url: str
    key: str


def map_income_accounts(account: ConnectedAccount, sandbox_url: str, item_ids: list[str]
                        ) -> None:
    """Step 3 of the wizard done ahead: these items post to the company's first income
    account (a mapping may be saved before the item's first event)."""
    from types import SimpleNamespace

    from bench.chaos import map_items

    map_items(account.db_url, account.key, sandbox_url, account.account,
              SimpleNamespace(items=dict.fromkeys(item_ids)))  # type: ignore[arg-type]


@pytest.fixture
def xero_account(tmp_path: Path, sandbox_url: str) -> ConnectedAccount:
    db_url = f"sqlite:///{tmp_path / 'ops.db'}"
    migrate(db_url)
    key = generate_key()
    account = ConnectedAccount(f"acct-{uuid.uuid4().hex[:8]}", str(uuid.uuid4()), db_url, key)
    connect_sandbox_account(db_url, key, sandbox_url, "xero", account.account, account.tenant)
    return account
