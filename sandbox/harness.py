"""Test and benchmark harness: worker processes and a reader of the status topic."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer

from schemas.codec import AvroCodec
from schemas.status import SyncStatusEvent

__all__ = ["BooksView", "StatusReader", "WorkerProcess", "connect_sandbox_account", "read_books"]

_ROOT = Path(__file__).resolve().parent.parent


class WorkerProcess:
    """`blueclerk-sync worker` as a real OS process, killed or stopped like in production."""

    def __init__(self, env: Mapping[str, str], log_path: Path | None = None) -> None:
        self._env = {**os.environ, **env}
        self._log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        out = self._log_path.open("ab") if self._log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen([sys.executable, "-m", "control.cli", "worker"],
                                     env=self._env, cwd=_ROOT, stdout=out, stderr=out)
        return self

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM: the worker drains, commits and exits."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL: no drain, no commit; the next owner replays."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=30)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.running:
            self.kill()


class StatusReader:
    """Reads the sync-status topic from the beginning, keeping every status seen."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": f"status-reader-{uuid.uuid4()}",
            "auto.offset.reset": "earliest", "enable.auto.commit": False,
        })
        self._consumer.subscribe([topic])
        self._codec = AvroCodec()
        self.statuses: list[SyncStatusEvent] = []
        self._ids: set[str] = set()

    def poll(self, seconds: float = 0.5) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            message = self._consumer.poll(0.1)
            if message is None or message.error():
                continue
            value = message.value()
            assert isinstance(value, bytes)
            status = SyncStatusEvent.from_avro(self._codec.decode(value).value)
            # The outbox publishes at least once; status_id makes a re-publish harmless.
            if status.status_id not in self._ids:
                self._ids.add(status.status_id)
                self.statuses.append(status)

    def wait_for(self, done: Callable[[list[SyncStatusEvent]], bool],
                 timeout: float = 120.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll(0.5)
            if done(self.statuses):
                return True
        return done(self.statuses)

    def close(self) -> None:
        self._consumer.close()


def connect_sandbox_account(db_url: str, token_key: str, sandbox_url: str, provider: str,
                            account_id: str, tenant: str,
                            connected_at: dt.datetime | None = None) -> None:
    """Connect a BlueClerk account to a simulator tenant without the browser consent."""
    import httpx

    from providers.oauth import TokenSet
    from state.connections import ConnectionStore
    from state.crypto import TokenCipher
    from state.db import Database

    grant = httpx.post(f"{sandbox_url}/{provider}/_sandbox/grants", json={"tenant": tenant},
                       timeout=10)
    grant.raise_for_status()
    if provider == "xero":
        # The scripted businesses charge US sales tax (8.25% state, 10% city), so their
        # Xero organisation is a US one with those sales tax rates added.
        httpx.post(f"{sandbox_url}/xero/_sandbox/seed/{tenant}", json={"Region": "US", "TaxRates": [
            {"TaxType": "TAX001", "Name": "State Sales Tax", "EffectiveRate": "8.25"},
            {"TaxType": "TAX002", "Name": "City Sales Tax", "EffectiveRate": "10"}]},
            timeout=10).raise_for_status()
    db = Database(db_url)
    try:
        ConnectionStore(db, TokenCipher(token_key)).connect(
            account_id, provider, tenant, TokenSet.from_response(grant.json()),
            connected_at=connected_at or dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
    finally:
        db.dispose()


@dataclass
class BooksView:
    """What a provider's books hold, normalised across the three simulators."""

    customers: list[str]
    invoices: dict[str, tuple[Decimal, bool]]  # number -> (total, voided)
    payments: list[tuple[str, Decimal]]  # (invoice number, amount)
    invoice_numbers: list[str]  # every invoice in the books, duplicates included
    items: list[str]


def read_books(sandbox_url: str, provider: str, tenant: str) -> BooksView:
    import httpx

    raw: dict[str, Any] = httpx.get(f"{sandbox_url}/{provider}/_sandbox/books/{tenant}",
                                    timeout=30).json()
    if provider == "quickbooks":
        numbers = {i["Id"]: i["DocNumber"] for i in raw.get("Invoice", [])}
        return BooksView(
            [c["DisplayName"] for c in raw.get("Customer", [])],
            {i["DocNumber"]: (Decimal(str(i["TotalAmt"])),
                              str(i.get("PrivateNote", "")).startswith("Voided"))
             for i in raw.get("Invoice", [])},
            [(numbers[line["LinkedTxn"][0]["TxnId"]], Decimal(str(line["Amount"])))
             for p in raw.get("Payment", []) for line in p.get("Line", [])],
            [i["DocNumber"] for i in raw.get("Invoice", [])],
            [i["Name"] for i in raw.get("Item", [])],
        )
    if provider == "xero":
        numbers = {i["InvoiceID"]: i["InvoiceNumber"] for i in raw.get("Invoices", [])}
        return BooksView(
            [c["Name"] for c in raw.get("Contacts", [])],
            {i["InvoiceNumber"]: (Decimal(str(i["Total"])),
                                  i.get("Status") in ("VOIDED", "DELETED"))
             for i in raw.get("Invoices", [])},
            [(numbers[p["Invoice"]["InvoiceID"]], Decimal(str(p["Amount"])))
             for p in raw.get("Payments", []) if p.get("Status") != "DELETED"],
            [i["InvoiceNumber"] for i in raw.get("Invoices", [])
             if i.get("Status") != "DELETED"],
            [i["Name"] for i in raw.get("Items", [])],
        )
    numbers = {i["id"]: i["invoice_number"] for i in raw.get("invoices", [])}
    return BooksView(
        [c.get("organization") or f"{c.get('fname', '')} {c.get('lname', '')}".strip()
         for c in raw.get("clients", []) if c.get("vis_state", 0) != 1],
        {i["invoice_number"]: (Decimal(i["amount"]["amount"]), i.get("vis_state") == 1)
         for i in raw.get("invoices", [])},
        [(numbers[p["invoiceid"]], Decimal(p["amount"]["amount"]))
         for p in raw.get("payments", []) if p.get("vis_state", 0) != 1],
        [i["invoice_number"] for i in raw.get("invoices", [])],
        [i["name"] for i in raw.get("items", []) if i.get("vis_state", 0) != 1],
    )
