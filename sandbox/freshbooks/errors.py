"""FreshBooks error envelopes (providers.md 3.5; shapes from specs/freshbooks-sdk-fixtures/).

Three envelopes exist and the simulator uses each where FreshBooks does:

- accounting: ``{"response":{"errors":[{"errno","field","message","object","value"}]}}``
  (fixture ``get_client_response__not_found.json``);
- ledger (``/accounting/businesses/...``): ``{"errors":{"message","status","details":[...]}}``
  (fixtures ``create_ledger_account_response__validation_errors.json``,
  ``get_ledger_account_response__not_found.json``);
- auth (``/auth/...``): ``{"error","error_description"}`` (fixture
  ``auth_me_response__no_auth.json``; OAuth token errors use the same RFC 6749 shape).

HTTP status per errno is not published [unconf]; the simulator's choice:
1012 UnknownResource -> 404 (the PHP SDK docs show 404 for "Client not found"),
1005/1013/1014 -> 400, 1003 -> 401 (bad token) or 403 (account not owned), 409 -> 409,
500 -> 500, every other validation errno (1001, 1004, 1011, 1018, 1026, ...) -> 422.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ERRNO_STATUS",
    "SimError",
    "accounting_error",
    "auth_error",
    "ledger_error",
]

# errno -> name (F-err, also in FreshBooks' Postman collection)
ERRNO_NAMES: dict[int, str] = {
    409: "Conflict",
    500: "FreshAlchemyUnexpected",
    1001: "RequiredField",
    1003: "AccessDenied",
    1004: "InvalidValue",
    1005: "ParseError",
    1011: "DeletedResource",
    1012: "UnknownResource",
    1013: "InvalidPerPage",
    1014: "InvalidPage",
    1017: "MaxLengthExceeded",
    1018: "InvalidPercentValue",
    1025: "InvalidNegativeValue",
    1026: "DuplicateTax",
    1040: "InvalidTotal",
    1042: "InactiveAccountError",
}

ERRNO_STATUS: dict[int, int] = {
    409: 409,
    500: 500,
    1003: 403,
    1005: 400,
    1012: 404,
    1013: 400,
    1014: 400,
}


class SimError(Exception):
    """An error reply: HTTP status, JSON body and extra headers."""

    def __init__(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body
        self.headers = headers or {}


def accounting_error(
    errno: int,
    message: str,
    *,
    field: str | None = None,
    object_: str | None = None,
    value: Any = None,
    status: int | None = None,
    headers: dict[str, str] | None = None,
) -> SimError:
    entry = {
        "errno": errno,
        "field": field,
        "message": message,
        "object": object_,
        "value": None if value is None else str(value),
    }
    return SimError(
        status if status is not None else ERRNO_STATUS.get(errno, 422),
        {"response": {"errors": [entry]}},
        headers,
    )


def ledger_error(status: int, details: list[tuple[str | None, str]]) -> SimError:
    return SimError(
        status,
        {
            "errors": {
                "message": f"Request failed with status code {status}",
                "status": status,
                "details": [
                    {
                        "reason": f"{field}: {message}" if field else message,
                        "metadata": {"message": message, "field": field},
                    }
                    for field, message in details
                ],
            }
        },
    )


def auth_error(status: int, error: str, description: str) -> SimError:
    return SimError(status, {"error": error, "error_description": description})
