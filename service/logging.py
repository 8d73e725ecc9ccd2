"""Structured JSON logs (structlog) that never carry a secret.

Every line is one JSON object with the tenant (`account_id`) and `event_id` bound where
known. A redaction processor removes secret-named keys and secret-shaped values
(`schemas.redaction`) from any string or bytes before rendering, and the standard
library's records (uvicorn, authlib, SQLAlchemy, tracebacks) pass the same scrub in
their formatter, as a last line of defence.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

from schemas.redaction import scrub

__all__ = ["RedactingFormatter", "configure_logging", "quiet_library_warnings", "redact"]

_SECRET_KEYS = re.compile(r"(token|secret|password|authorization|verifier|code_verifier|key|"
                          r"binding|^code)$", re.IGNORECASE)
_ALLOWED = {"idempotency_key", "key", "partition_key", "error_code", "status_code"}


def _scrub(value: str) -> str:
    return scrub(value)


def _secret_key(key: object) -> bool:
    return isinstance(key, str) and key not in _ALLOWED and bool(_SECRET_KEYS.search(key))


def _clean(value: Any) -> Any:
    """Scrub strings and secret-named keys at any depth (headers, token responses)."""
    if isinstance(value, str):
        return _scrub(value)
    if isinstance(value, bytes | bytearray):
        return _scrub(bytes(value).decode("utf-8", errors="replace"))
    if isinstance(value, Mapping):
        return {k: "[redacted]" if _secret_key(k) else _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(v) for v in value]
    return value


def redact(_logger: Any, _method: str,
           event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if _secret_key(key):
            event_dict[key] = "[redacted]"
        else:
            event_dict[key] = _clean(event_dict[key])
    return event_dict


class _StderrLogger:
    """Writes each line to whatever `sys.stderr` is at call time (not at configure time),
    so a replaced or closed stream (test capture, daemon re-exec) is never written to."""

    def __init__(self, *_args: Any) -> None:
        pass

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


class RedactingFormatter(logging.Formatter):
    """The standard library's records (uvicorn, authlib, httpx, SQLAlchemy, tracebacks
    included) scrubbed after formatting, so no argument or exception text escapes."""

    def format(self, record: logging.LogRecord) -> str:
        return _scrub(super().format(record))


def quiet_library_warnings() -> None:
    """No library deprecation notices on a user's terminal. authlib announces its httpx
    fallback with a warning it forces to "always" when `authlib.deprecate` is imported;
    the filter added after that import wins. Only authlib's category is silenced here."""
    import warnings

    try:
        from authlib.deprecate import AuthlibDeprecationWarning
    except ImportError:  # pragma: no cover - authlib is a dependency
        return
    warnings.filterwarnings("ignore", category=AuthlibDeprecationWarning)


def configure_logging(level: str = "info") -> None:
    logging.basicConfig(format="%(levelname)s %(name)s %(message)s", stream=sys.stderr,
                        level=getattr(logging, level.upper(), logging.INFO))
    for handler in logging.getLogger().handlers:
        handler.setFormatter(RedactingFormatter(handler.formatter._fmt
                                                if handler.formatter else None))
    for noisy in ("httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.format_exc_info,
            # Everything the caller and the context gave, and any traceback, is scrubbed;
            # the level and the timestamp added after it are structlog's own (a level name
            # and the clock), so the scrub's regexes do not run over them on every line
            # (issue 12: at LOG_LEVEL=info, scrubbing was most of an event's log line).
            redact,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            getattr(logging, level.upper(), logging.INFO)),
        logger_factory=_StderrLogger,
        cache_logger_on_first_use=True,
    )
