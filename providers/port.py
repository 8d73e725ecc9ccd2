"""The provider port: what the sync engine and the control plane need from an accounting system.

One adapter instance serves one connection (one BlueClerk account's company, organisation
or FreshBooks account). Adapters are the only code that knows a provider's field names.
Every write takes an idempotency key derived from the intent; adapters pass it to the
provider where it is honoured and look the record up first where it is not.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from providers.errors import ProviderError
from providers.taxes import ProviderTaxRate
from schemas.inbound import BooksRecord
from schemas.records import Address, Customer, Invoice, Item, Payment

__all__ = [
    "AccountingProvider",
    "BatchWrite",
    "InboundChange",
    "IncomeAccount",
    "ProviderRecord",
    "RemoteCustomer",
    "RemoteItem",
    "WriteIntent",
]


@dataclass(frozen=True, slots=True)
class WriteIntent:
    """What the engine knows about a write before it is attempted."""

    key: str  # deterministic idempotency key (<= 36 chars: fits every provider's limit)
    # An earlier attempt ended with an unknown outcome (timeout): the record may exist
    # already, so the adapter must look it up before creating.
    after_unknown_outcome: bool = False


@dataclass(frozen=True, slots=True)
class ProviderRecord:
    """A record in the books: its id, its version token (QuickBooks SyncToken) and total."""

    id: str
    version: str | None = None
    total: Decimal | None = None


@dataclass(frozen=True, slots=True)
class BatchWrite:
    """One create or update of a customer or an item, sent with others in one request.

    The writes of one batch are independent: none needs another's result, and no two
    are for the same BlueClerk record (the engine guarantees both).
    """

    record: Customer | Item
    link: ProviderRecord | None
    write: WriteIntent
    income_account_id: str | None = None  # items only: the mapped income account


@dataclass(frozen=True, slots=True)
class RemoteCustomer:
    id: str
    display_name: str
    given_name: str | None = None
    family_name: str | None = None
    company_name: str | None = None
    email: str | None = None
    phone: str | None = None
    address: Address | None = None
    active: bool = True


@dataclass(frozen=True, slots=True)
class RemoteItem:
    id: str
    name: str
    sku: str | None = None
    description: str | None = None
    unit_price: Decimal = Decimal("0")
    income_account_id: str | None = None
    active: bool = True


@dataclass(frozen=True, slots=True)
class IncomeAccount:
    id: str
    name: str
    code: str | None = None


@dataclass(frozen=True, slots=True)
class InboundChange:
    """A change made in the accounting system, to be published back to BlueClerk.

    `snapshot` is the record's current state in canonical form (parsed by the provider's
    `canonical` module); None when the provider reports a deletion without data. The
    `operation` is only what the row itself says: deleted or voided, otherwise
    "updated"; the poller decides created vs updated by whether BlueClerk knew the record.
    """

    entity_type: str  # customer | item | invoice | payment
    provider_id: str
    operation: str  # updated | deleted | voided
    changed_at: dt.datetime
    data: Mapping[str, Any] = field(default_factory=dict)
    snapshot: BooksRecord | None = None


class AccountingProvider(Protocol):
    name: str
    # The most writes `write_batch` sends in one request (QuickBooks `batch`: 30; Xero's
    # multi-element PUT/POST: 50); 1 where the provider has no batch endpoint.
    batch_size: int

    def write_batch(self, writes: Sequence[BatchWrite]
                    ) -> list[ProviderRecord | ProviderError]:
        """Each write's outcome, in the order given: the record in the books, or the
        error that refused that one record. Raises a ProviderError (throttled, expired,
        unavailable, timed out) when the request as a whole has no per-record outcome.

        Writes beyond `batch_size`, or of several kinds (Xero: /Contacts and /Items),
        take several requests. When one of them fails as a whole after another already
        gave outcomes, nothing is raised: the failed request's writes carry its error
        (UnknownOutcome after a timeout: they may have been applied) and writes never
        sent carry Throttled / AuthExpired / ReconnectRequired, or a plain
        TransientProviderError saying they were not sent. A per-record error can thus be
        transient; treat it as the single-record call's error for that record."""
        ...

    def upsert_customer(self, customer: Customer, link: ProviderRecord | None,
                        write: WriteIntent) -> ProviderRecord: ...

    def upsert_item(self, item: Item, income_account_id: str | None,
                    link: ProviderRecord | None, write: WriteIntent) -> ProviderRecord: ...

    def upsert_invoice(self, invoice: Invoice, customer: ProviderRecord,
                       items: Mapping[str, ProviderRecord], link: ProviderRecord | None,
                       write: WriteIntent,
                       taxes: Mapping[str, ProviderTaxRate] | None = None) -> ProviderRecord:
        """`taxes` maps each taxed line's `tax_key` to the company's tax code for it."""
        ...

    def void_invoice(self, invoice: Invoice, link: ProviderRecord,
                     write: WriteIntent) -> ProviderRecord: ...

    def record_payment(self, payment: Payment, invoice: ProviderRecord,
                       customer: ProviderRecord, link: ProviderRecord | None,
                       write: WriteIntent) -> ProviderRecord: ...

    def list_customers(self) -> list[RemoteCustomer]: ...

    def list_items(self) -> list[RemoteItem]: ...

    def list_income_accounts(self) -> list[IncomeAccount]: ...

    def list_tax_rates(self) -> list[ProviderTaxRate]:
        """The company's sales tax codes (for matching BlueClerk's tax rates)."""
        ...

    def fetch_changes(self, since: dt.datetime) -> list[InboundChange]: ...
