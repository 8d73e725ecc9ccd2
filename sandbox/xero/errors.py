"""Xero's error envelopes (providers.md §2.5) and response helpers."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.responses import JSONResponse, PlainTextResponse, Response

__all__ = [
    "ApiError",
    "NotFound",
    "ValidationFailed",
    "auth_problem",
    "not_found",
    "offline",
    "validation_body",
]


class ApiError(Exception):
    """Raised by the books layer; turned into a response by the app."""

    def __init__(self, status: int, body: Any, *, text: bool = False) -> None:
        super().__init__(str(body))
        self.status = status
        self.body = body
        self.text = text

    def response(self) -> Response:
        if self.text:
            return PlainTextResponse(str(self.body), status_code=self.status)
        return JSONResponse(self.body, status_code=self.status)


class ValidationFailed(ApiError):
    """400 ValidationException for a whole request (elements with their errors)."""

    def __init__(self, elements: list[dict[str, Any]], message: str | None = None) -> None:
        super().__init__(400, validation_body(elements, message))


class NotFound(ApiError):
    def __init__(self) -> None:
        super().__init__(404, "The resource you're looking for cannot be found", text=True)


def validation_body(elements: list[dict[str, Any]], message: str | None = None) -> dict[str, Any]:
    return {
        "ErrorNumber": 10,
        "Type": "ValidationException",
        "Message": message or "A validation exception occurred",
        "Elements": elements,
    }


def auth_problem(status: int, detail: str) -> JSONResponse:
    """401/403 problem body: `TokenExpired` or `AuthenticationUnsuccessful`."""
    return JSONResponse(
        {
            "Type": None,
            "Title": "Unauthorized" if status == 401 else "Forbidden",
            "Status": status,
            "Detail": detail,
            "Instance": str(uuid.uuid4()),
            "Extensions": {},
        },
        status_code=status,
    )


def not_found() -> Response:
    return NotFound().response()


def offline() -> Response:
    return PlainTextResponse("The Organisation is offline", status_code=503)
