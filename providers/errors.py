"""Provider failures, classified once so the engine can decide: retry, wait, or fail."""

from __future__ import annotations

from decimal import Decimal

from schemas.error_codes import ErrorCode

__all__ = [
    "AuthExpired",
    "DuplicateName",
    "PermanentProviderError",
    "ProviderError",
    "ReconnectRequired",
    "RecordNotFound",
    "StaleVersion",
    "Throttled",
    "TotalMismatch",
    "TransientProviderError",
    "UnknownOutcome",
    "not_sent",
]


class ProviderError(Exception):
    """Base class; `code` is from the closed list, `transient` says whether to retry."""

    code: ErrorCode = ErrorCode.INTERNAL
    transient: bool = False

    def __init__(self, message: str, *, code: ErrorCode | None = None,
                 status: int | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.status = status


class TransientProviderError(ProviderError):
    """Timeouts, connection errors, 5xx: retry with backoff."""

    code = ErrorCode.PROVIDER_UNAVAILABLE
    transient = True

    def __init__(self, message: str, *, code: ErrorCode | None = None,
                 status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, code=code, status=status)
        self.retry_after = retry_after


class Throttled(TransientProviderError):
    """429 (or the local limiter): wait `retry_after` seconds; `scope` is minute or day."""

    code = ErrorCode.THROTTLED

    def __init__(self, message: str, *, retry_after: float, scope: str = "minute",
                 status: int | None = 429) -> None:
        super().__init__(message, status=status, retry_after=retry_after)
        self.scope = scope


class UnknownOutcome(TransientProviderError):
    """A write timed out: it may have been applied. Look the record up before retrying."""

    code = ErrorCode.TIMEOUT


class PermanentProviderError(ProviderError):
    code = ErrorCode.VALIDATION_FAILED


class AuthExpired(ProviderError):
    """The access token was refused; refresh and retry once."""

    code = ErrorCode.AUTH_EXPIRED
    transient = True


class ReconnectRequired(PermanentProviderError):
    """The grant is revoked or expired: only the user reconnecting can fix it."""

    code = ErrorCode.RECONNECT_REQUIRED


class StaleVersion(ProviderError):
    """QuickBooks SyncToken was stale; re-read and retry once."""

    code = ErrorCode.CONFLICT
    transient = True


class DuplicateName(PermanentProviderError):
    code = ErrorCode.DUPLICATE_NAME


class RecordNotFound(PermanentProviderError):
    code = ErrorCode.NOT_FOUND


class TotalMismatch(PermanentProviderError):
    code = ErrorCode.TOTAL_MISMATCH

    def __init__(self, ours: Decimal, theirs: Decimal, currency: str, provider_id: str) -> None:
        super().__init__(
            f"BlueClerk total {ours} {currency} but the books total {theirs} {currency} "
            f"(provider record {provider_id})"
        )
        self.ours, self.theirs, self.provider_id = ours, theirs, provider_id


def not_sent(exc: ProviderError) -> ProviderError:
    """The outcome of writes a batch never sent because an earlier request of it failed
    with `exc` (providers' write_batch)."""
    if isinstance(exc, Throttled | AuthExpired | ReconnectRequired):
        return exc  # the same holds for them: wait, refresh, or reconnect
    return TransientProviderError(f"not sent: an earlier request of the batch failed ({exc})",
                                  code=exc.code if exc.transient else None,
                                  retry_after=getattr(exc, "retry_after", None))
