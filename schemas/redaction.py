"""Secrets out of text: the last line of defence before a string leaves the service.

Applied to every log line (structlog and the standard library's loggers, tracebacks
included), to status and dead-letter messages and headers, and to the control API's
error messages. It recognises secrets by shape and by name: bearer and basic
credentials, OAuth parameters (`code`, `code_verifier`, `client_secret`, tokens) in query
strings, forms and JSON, and passwords in database URLs.
"""

from __future__ import annotations

import re

__all__ = ["SECRET_NAMES", "scrub"]

# Parameter and field names whose values are secrets wherever they appear.
SECRET_NAMES = ("access_token", "refresh_token", "id_token", "client_secret", "code_verifier",
                "code", "password", "passwd", "secret", "token", "verifier", "binding",
                "authorization", "api_key", "apikey")
_NAMES = "|".join(sorted(SECRET_NAMES, key=len, reverse=True))
# Unambiguous names are also caught as "name: value" (a short name like `code` is not:
# "error code: 6240" is no secret).
_STRONG = "access_token|refresh_token|id_token|client_secret|code_verifier|password"
_REDACTED = "[redacted]"
_PATTERNS = (
    # Authorization headers: "Bearer <token>", "Basic <base64>".
    (re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{4,}", re.IGNORECASE),
     r"\1 " + _REDACTED),
    # name=value in query strings, forms and logfmt (value up to & , space or quote).
    (re.compile(rf"(?<![A-Za-z0-9_])((?:{_NAMES}))=([^&\s\"',;)}}\]]+)", re.IGNORECASE),
     r"\1=" + _REDACTED),
    (re.compile(rf"(?<![A-Za-z0-9_])((?:{_STRONG})\s*:\s*)([^\s\"',;)}}\]]+)", re.IGNORECASE),
     r"\1" + _REDACTED),
    # "name": "value" / 'name': 'value' in JSON and Python reprs.
    (re.compile(rf"([\"'](?:{_NAMES})[\"']\s*:\s*)([\"'])(?:\\.|(?!\2).)*\2", re.IGNORECASE),
     r"\1\2" + _REDACTED + r"\2"),
    # scheme://user:password@host
    (re.compile(r"([a-z][a-z0-9+.-]*://[^:/@\s]+:)[^@\s]+@", re.IGNORECASE),
     r"\1" + _REDACTED + "@"),
)


def scrub(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
