"""Per-entity sync handlers: resolve dependencies, then call the provider.

Each handler takes a decoded change event and a `SyncContext` (the connection's adapter
plus access to links, snapshots and mappings) and either returns what was applied or
raises: `Parked` when something it needs is missing, a `ProviderError` when the provider
refuses. Handlers never commit outcomes; the engine does, in one transaction.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from providers.errors import PermanentProviderError
from providers.port import AccountingProvider, ProviderRecord, WriteIntent
from providers.taxes import ProviderTaxRate
from schemas.error_codes import ErrorCode
from schemas.records import (
    ChangeEvent,
    Customer,
    EventType,
    Invoice,
    InvoiceLine,
    Item,
    Payment,
    Record,
    to_plain,
)

__all__ = [
    "PROVIDERS_NEEDING_INCOME_ACCOUNT",
    "Applied",
    "Parked",
    "SyncContext",
    "apply_event",
    "idempotency_key",
    "payload_hash",
    "plan_upsert",
]

# FreshBooks items have no income-account field, so only these block on a mapping.
PROVIDERS_NEEDING_INCOME_ACCOUNT = frozenset({"quickbooks", "xero"})


class Parked(Exception):
    """The event cannot apply yet; `waits_for` names what will re-drive it."""

    def __init__(self, code: ErrorCode, waits_for: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.waits_for = waits_for


@dataclass(frozen=True, slots=True)
class Applied:
    operation: str  # create | update | void | payment | none
    record: ProviderRecord | None
    payload_hash: str | None
    unchanged: bool = False


def idempotency_key(account_id: str, entity_type: str, entity_id: str, version: int,
                    operation: str) -> str:
    """Deterministic per (record version, operation); 32 hex chars fit every provider."""
    raw = f"{account_id}|{entity_type}|{entity_id}|{version}|{operation}"
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def payload_hash(provider: str, record: Record, extra: dict[str, Any] | None = None) -> str:
    body = {"provider": provider, "record": to_plain(record), "extra": extra or {}}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


class SyncContext:
    """What a handler may ask for; implemented by the engine over the database."""

    provider_name: str
    adapter: AccountingProvider

    def link(self, entity_type: str, entity_id: str) -> tuple[ProviderRecord, str | None] | None:
        """The provider record linked to a BlueClerk record, and the payload hash synced."""
        raise NotImplementedError

    def ensure_dependency(self, entity_type: str, entity_id: str) -> ProviderRecord:
        """Link or create a dependency from its latest snapshot; raise Parked if unknown."""
        raise NotImplementedError

    def income_account(self, item_id: str) -> str | None:
        raise NotImplementedError

    def tax_code(self, line: InvoiceLine) -> tuple[ProviderTaxRate | None, str]:
        """The company's tax code for the line's tax rate (saved, or matched automatically
        and saved), or None with the reason no code could be chosen."""
        raise NotImplementedError

    def latest(self, entity_type: str, entity_id: str) -> Record | None:
        """The newest snapshot seen of a record, if any."""
        raise NotImplementedError

    def applied_version(self, entity_type: str, entity_id: str) -> int:
        """The entity_version last applied to the books for a record (0: none)."""
        raise NotImplementedError

    def failed_version(self, entity_type: str, entity_id: str) -> int:
        """The version of the record's newest change if that change ended failed or
        dead-lettered (it will not reach the books until fixed and replayed); else 0."""
        raise NotImplementedError

    def write_intent(self, operation: str) -> WriteIntent:
        raise NotImplementedError


def apply_event(ctx: SyncContext, event: ChangeEvent) -> Applied:
    record = event.record
    if isinstance(record, Customer):
        return _customer(ctx, record, event)
    if isinstance(record, Item):
        return _item(ctx, record, event)
    if isinstance(record, Invoice):
        return _invoice(ctx, record, event)
    return _payment(ctx, record, event)


def _existing(ctx: SyncContext, event: ChangeEvent) -> tuple[ProviderRecord | None, str | None]:
    found = ctx.link(event.entity_type.value, event.entity_id)
    return (found[0], found[1]) if found else (None, None)


def plan_upsert(provider: str, event: ChangeEvent, link: ProviderRecord | None,
                synced_hash: str | None, income_account: str | None) -> tuple[str, str]:
    """What a customer or item change needs, decided without the provider: (operation,
    payload hash), the operation "none" when the books already hold this content, "create"
    or "update" otherwise. Raises Parked for an item without the income-account mapping
    the provider needs. The single path (below) and the engine's batches both use it."""
    record = event.record
    if isinstance(record, Item):
        if income_account is None and provider in PROVIDERS_NEEDING_INCOME_ACCOUNT:
            raise Parked(ErrorCode.UNMAPPED_ITEM, f"mapping:{record.id}", _unmapped_message(
                provider, event.account_id, record.id,
                f"item {record.name!r} ({record.id})"))
        digest = payload_hash(provider, record, {"income_account": income_account})
    else:
        assert isinstance(record, Customer)
        digest = payload_hash(provider, record)
    if link is not None and digest == synced_hash:
        return "none", digest
    return ("update" if link else "create"), digest


def _customer(ctx: SyncContext, customer: Customer, event: ChangeEvent) -> Applied:
    link, synced_hash = _existing(ctx, event)
    operation, digest = plan_upsert(ctx.provider_name, event, link, synced_hash, None)
    if operation == "none":
        return Applied("none", link, digest, unchanged=True)
    record = ctx.adapter.upsert_customer(customer, link, ctx.write_intent(operation))
    return Applied(operation, record, digest)


def _unmapped_message(provider: str, account_id: str, item_id: str, what: str) -> str:
    """What to map and where, for a record waiting for an item's income-account mapping."""
    return (f"{what} has no income-account mapping, so it is not sent to {provider} (no "
            "default sales account is guessed). Map it in the setup wizard, step 3: "
            f"`blueclerk-sync wizard map --account {account_id} --item {item_id} "
            f"--income-account <ACCOUNT>` or PUT /v1/accounts/{account_id}/mappings/{item_id} "
            '{"income_account_id": "<ACCOUNT>"}; it is sent as soon as the mapping is saved')


def _item(ctx: SyncContext, item: Item, event: ChangeEvent) -> Applied:
    account = ctx.income_account(item.id)
    if account is None and ctx.provider_name in PROVIDERS_NEEDING_INCOME_ACCOUNT:
        plan_upsert(ctx.provider_name, event, None, None, None)  # raises Parked
    link, synced_hash = _existing(ctx, event)
    operation, digest = plan_upsert(ctx.provider_name, event, link, synced_hash, account)
    if operation == "none":
        return Applied("none", link, digest, unchanged=True)
    record = ctx.adapter.upsert_item(item, account, link, ctx.write_intent(operation))
    return Applied(operation, record, digest)


def _invoice(ctx: SyncContext, invoice: Invoice, event: ChangeEvent) -> Applied:
    link, synced_hash = _existing(ctx, event)
    if event.event_type in (EventType.VOIDED, EventType.DELETED) or invoice.status == "void":
        if link is None:
            # Never reached the books, so there is nothing to void there.
            return Applied("none", None, None, unchanged=True)
        if synced_hash == "void":
            return Applied("none", link, "void", unchanged=True)
        record = ctx.adapter.void_invoice(invoice, link, ctx.write_intent("void"))
        return Applied("void", record, "void")
    customer = ctx.ensure_dependency("customer", invoice.customer_id)
    items = {line.item_id: ctx.ensure_dependency("item", line.item_id) for line in invoice.lines}
    if ctx.provider_name in PROVIDERS_NEEDING_INCOME_ACCOUNT:
        # An item linked from the books without an income account (imported in the wizard)
        # is in the books but has no account to post to: the invoice waits for its mapping
        # (re-driven when it is saved) instead of failing or landing on a guessed account.
        for item_id in sorted(items):
            if ctx.income_account(item_id) is None:
                known = ctx.latest("item", item_id)
                name = f"{known.name!r} ({item_id})" if isinstance(known, Item) else item_id
                raise Parked(ErrorCode.UNMAPPED_ITEM, f"mapping:{item_id}", _unmapped_message(
                    ctx.provider_name, event.account_id, item_id,
                    f"invoice {invoice.number}: item {name}"))
    taxes = _tax_codes(ctx, invoice, event)
    digest = payload_hash(ctx.provider_name, invoice,
                          {"customer": customer.id, "items": {k: v.id for k, v in items.items()},
                           "taxes": {k: v.code for k, v in sorted(taxes.items())}})
    if link is not None and digest == synced_hash:
        return Applied("none", link, digest, unchanged=True)
    operation = "update" if link else "create"
    record = ctx.adapter.upsert_invoice(invoice, customer, items, link,
                                        ctx.write_intent(operation), taxes=taxes)
    return Applied(operation, record, digest)


def _tax_codes(ctx: SyncContext, invoice: Invoice, event: ChangeEvent
               ) -> dict[str, ProviderTaxRate]:
    """The company's tax code for each BlueClerk tax rate on the invoice; an unmapped
    rate (no saved mapping and no unambiguous automatic match) makes the invoice wait."""
    taxes: dict[str, ProviderTaxRate] = {}
    if invoice.tax_mode == "none":
        return taxes
    for n, line in enumerate(invoice.lines, start=1):
        if not line.taxed or line.tax_key in taxes:
            continue
        code, reason = ctx.tax_code(line)
        if code is None:
            label = line.tax_rate_name or "tax rate"
            raise Parked(ErrorCode.UNMAPPED_TAX_RATE, f"taxrate:{line.tax_key}", (
                f"invoice {invoice.number} line {n}: {label} "
                f"{line.tax_rate_percent.normalize():f}% ({line.tax_key}) has no "
                f"{ctx.provider_name} tax code: {reason}. Map it in the setup wizard, step 3 "
                f"(taxes): `blueclerk-sync wizard map-tax --account {event.account_id} "
                f"--tax-rate {line.tax_key} --tax-code <CODE>` or PUT "
                f"/v1/accounts/{event.account_id}/tax-mappings/{line.tax_key} "
                '{"tax_code": "<CODE>"}; the invoice is sent as soon as it is saved'))
        taxes[line.tax_key] = code
    return taxes


def _payment(ctx: SyncContext, payment: Payment, event: ChangeEvent) -> Applied:
    link, synced_hash = _existing(ctx, event)
    known = ctx.latest("invoice", payment.invoice_id)
    if isinstance(known, Invoice) and known.status != "void" and payment.amount > known.total:
        # Topics are consumed independently: the invoice version this payment was taken
        # against has not arrived yet. Wait for it rather than overpay the books.
        raise Parked(ErrorCode.MISSING_DEPENDENCY, f"invoice:{payment.invoice_id}",
                     f"payment {payment.amount} exceeds invoice total {known.total} seen so "
                     "far; waiting for the invoice's newer version")
    invoice = ctx.ensure_dependency("invoice", payment.invoice_id)
    if payment.invoice_version is not None and \
            ctx.applied_version("invoice", payment.invoice_id) < payment.invoice_version:
        failed = ctx.failed_version("invoice", payment.invoice_id)
        if failed >= payment.invoice_version:
            # Waiting would be for ever: the invoice version it was taken against failed.
            raise PermanentProviderError(
                f"payment was taken against invoice version {payment.invoice_version}, "
                f"whose sync failed (version {failed}); fix the invoice and replay its dead "
                "letter, then replay this one (`blueclerk-sync replay-dead-letters --account "
                f"{event.account_id}`)", code=ErrorCode.MISSING_DEPENDENCY)
        raise Parked(ErrorCode.MISSING_DEPENDENCY, f"invoice:{payment.invoice_id}",
                     f"payment was taken against invoice version {payment.invoice_version}, "
                     "which is not in the books yet")
    customer = ctx.ensure_dependency("customer", payment.customer_id)
    digest = payload_hash(ctx.provider_name, payment, {"invoice": invoice.id})
    if link is not None and digest == synced_hash:
        return Applied("none", link, digest, unchanged=True)
    operation = "update" if link else "payment"
    record = ctx.adapter.record_payment(payment, invoice, customer, link,
                                        ctx.write_intent(operation))
    return Applied(operation, record, digest)
