"""Xero Accounting API 2.0 simulator.

Public API
----------
`create_app(board=None, limits=None, clients=None, *, clock=None) -> FastAPI`
(`sandbox.xero.app`), `XeroLimits` (`sandbox.xero.limits`), `ManualClock`.
State is reachable as `app.state.xero` (`XeroSim`).

Endpoints (no `/xero` prefix; the combined sandbox mounts this app at `/xero`)
-----------------------------------------------------------------------------
OAuth / identity:
- `GET  /identity/connect/authorize` HTML consent (client_id, response_type=code, scope,
  redirect_uri, state, code_challenge, code_challenge_method S256|plain)
- `POST /identity/connect/authorize/decision` form: same + decision=approve|deny +
  tenant=<id>[,<id>...] -> 302 `redirect_uri?code=..&state=..` or `?error=access_denied`
- `POST /connect/token` grant_type=authorization_code|refresh_token (Basic or form
  client auth; PKCE public clients may send client_id only)
- `POST /connect/revocation` token=<refresh token> -> 200; the grant loses all tenants
- `GET /connections`, `DELETE /connections/{id}` (also `/Connections`)

Accounting (`xero-tenant-id` header + Bearer):
- `/api.xro/2.0/Contacts[/{ContactID|ContactNumber}]` GET, PUT, POST
- `/api.xro/2.0/Items[/{ItemID|Code}]` GET, PUT, POST, DELETE
- `/api.xro/2.0/Accounts[/{AccountID}]` GET, PUT (create)
- `/api.xro/2.0/TaxRates` GET
- `/api.xro/2.0/Invoices[/{InvoiceID|InvoiceNumber}]` GET, PUT, POST
- `/api.xro/2.0/Payments[/{PaymentID}]` GET, PUT, POST (POST /Payments/{id} deletes)
- `/api.xro/2.0/Organisation` GET

Sandbox hooks:
- `POST /_sandbox/grants` {"tenant": id, "client_id"?, "scope"?, "tenantName"?,
  "tenants"?: [...]} -> token JSON (connects the tenant(s))
- `POST /_sandbox/tokens/{tenant}/expire` -> {"expired": n}
- `GET  /_sandbox/books/{tenant}` -> dump of every record
- `POST /_sandbox/seed/{tenant}` {"Region","Organisation","TaxRates","Accounts",
  "Contacts","Items","Invoices","Payments","TenantName"} -> dump (all-or-nothing; 400
  ValidationException on a bad element). `Region` NZ (default), AU, UK or US: base
  currency and the region's default tax rates and account tax types (README, Regions)
- `/_sandbox/faults/{tenant}` (`sandbox.faults.fault_router`)

Documented choices (where providers.md is silent or marked unconfirmed)
---------------------------------------------------------------------
- Refresh rotation: a rotated-out refresh token works for 30 min after its first use;
  each retry returns a fresh, independent pair of the same grant. After that, and for
  tokens not used within 60 days of issue: `400 {"error":"invalid_grant"}`.
- Token endpoint client errors are `400 {"error":"invalid_client"}`.
- No refresh token is issued unless the scope includes `offline_access`. Scopes are not
  enforced per endpoint.
- Idempotency: cache keyed by (tenant, key) for 6 min from the first call. Replays get
  the cached status/body plus `Idempotent-Replayed: true`. Reuse with a different
  method, URL (incl. query) or body -> 400 ValidationException. 5xx faults are never
  cached (they had no effect). Keys > 128 chars -> 400.
- All-or-nothing batches (default `summarizeErrors=true`): 400 ValidationException whose
  `Elements` are the failing elements (as submitted) with `ValidationErrors`.
- `ContactNumber` unique across all contacts (message "The contact number X is already
  assigned to another contact."). `POST /Contacts` updates by ContactID or, failing
  that, by a matching ContactNumber; `PUT /Contacts` updates only by ContactID (a
  clashing ContactNumber is an error). Items: POST matches by ItemID or Code; PUT with
  an existing Code -> "Item code 'X' already exists.".
- Invoices: created DRAFT unless Status says SUBMITTED/AUTHORISED. Transitions:
  DRAFT<->SUBMITTED, DRAFT/SUBMITTED->AUTHORISED|DELETED, AUTHORISED->VOIDED (no
  payments), PAID only via payments. Non-draft invoices need AccountCode on every
  line. InvoiceNumber auto `INV-0001`..; unique among non-deleted ACCREC. A
  client `TaxAmount` per line overrides the computed tax. A sent `LineAmount` must
  equal Quantity x UnitAmount x (1 - DiscountRate/100) to 2 dp ("The line total X does
  not match the expected line total Y"); `SubTotal`, `Total` are recomputed (ignored).
  An AUTHORISED invoice needs a DueDate ("The document DueDate field must be
  specified.") unless the contact's or the organisation's sales terms give one
  (`/_sandbox/seed` `{"Organisation": {"PaymentTerms": {"Sales": {"Day", "Type"}}}}`;
  none by default). Seed also takes `TaxRates` `[{"TaxType"?, "Name", "EffectiveRate",
  "CanApplyTo..."?}]` (without TaxType: the next TAX001, TAX002 ...; an existing one is
  edited). A line's TaxType (else its item's, else its account's default) must exist
  and be usable with the account's class (CanApplyTo*), with Xero's messages; its
  EffectiveRate is the rate applied. AU replaces NONE/EXEMPTINPUT (BASEXCLUDED,
  EXEMPTEXPENSES on EXPENSE accounts).
- Fault `error_after_apply_rate`: the write is applied and its response cached under
  the Idempotency-Key, then the caller gets 503/500; a same-key retry within 6 min gets
  the cached 200 (`Idempotent-Replayed: true`). See README.md.
- `where`: see `sandbox.xero.where` (string comparison case-insensitive).
- `If-Modified-Since` (HTTP date or ISO): records with UpdatedDateUTC >= the value.
- Tenant ids are opaque, case-sensitive strings (use Xero-style lowercase UUIDs); the
  same string keys books, connections and `FaultSwitchboard` plans. Any id named in a
  consent decision or `/_sandbox/grants` gets a fresh default organisation.
- Rate limit 429 bodies are plain text. Throttle faults answer `Retry-After: 1`.
"""

from sandbox.xero.app import ManualClock, XeroSim, create_app
from sandbox.xero.limits import XeroLimits

__all__ = ["ManualClock", "XeroLimits", "XeroSim", "create_app"]
