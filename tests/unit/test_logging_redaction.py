"""Secrets never reach a log line, wherever they hide in the event."""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from providers.oauth import ClientCredentials, TokenSet
from service.logging import configure_logging, redact

ACCESS = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LWFjY2Vzcw.Zm9vYmFy-_~+/="
REFRESH = "AB11728483620zRDgrYh3eOGQpNuNPm0PVVqFEBJNCkRsC2Lf8"
SECRET = "s3cr3t-Cl1ent-Pa55"
SECRETS = (ACCESS, REFRESH, SECRET, "c2VjcmV0LWFjY2Vzcw", "zRDgrYh3eOGQpNuNPm0PVVqFEBJN")


@pytest.fixture
def lines() -> Iterator[Any]:
    """The service's logging configuration, rendering into a buffer; yields a reader."""
    configure_logging("debug")
    buffer = io.StringIO()
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(buffer),
                        cache_logger_on_first_use=False)

    def read() -> list[str]:
        return [line for line in buffer.getvalue().splitlines() if line.strip()]

    yield read
    structlog.reset_defaults()


def _clean(lines: list[str]) -> list[dict[str, Any]]:
    assert lines, "nothing was logged"
    for line in lines:
        for secret in SECRETS:
            assert secret not in line, line
    return [json.loads(line) for line in lines]


@pytest.mark.parametrize("key", ["access_token", "refresh_token", "Authorization",
                                 "authorization", "client_secret", "password", "id_token",
                                 "code_verifier", "api_key", "token"])
def test_secret_named_keys(lines: Any, key: str) -> None:
    structlog.get_logger("t").info("calling", **{key: ACCESS})
    (record,) = _clean(lines())
    assert record[key] == "[redacted]"
    assert record["event"] == "calling"


def test_bearer_in_the_message(lines: Any) -> None:
    log = structlog.get_logger("t")
    log.info(f"GET /v3/company/1/query with Authorization: Bearer {ACCESS} failed")
    log.warning("retry", detail=f"header was 'bearer {ACCESS}'")
    first, second = _clean(lines())
    assert "Bearer [redacted]" in first["event"]
    assert "[redacted]" in second["detail"]


@pytest.mark.parametrize("template", [
    "refresh_token={refresh}&grant_type=refresh_token",
    '{{"access_token": "{access}", "refresh_token": "{refresh}", "expires_in": 3600}}',
    "{{'access_token': '{access}', 'refresh_token': '{refresh}'}}",
    "token endpoint said access_token:{access} refresh_token: {refresh}",
    "POST /oauth2/v1/tokens/bearer body=grant_type=refresh_token&refresh_token={refresh}",
])
def test_token_parameters_in_strings(lines: Any, template: str) -> None:
    text = template.format(access=ACCESS, refresh=REFRESH)
    structlog.get_logger("t").info(text, body=text)
    _clean(lines())


def test_nested_structures(lines: Any) -> None:
    log = structlog.get_logger("t")
    log.info("request", headers={"Authorization": f"Bearer {ACCESS}", "Accept": "json"})
    log.info("token_response", response={"access_token": ACCESS, "refresh_token": REFRESH,
                                         "expires_in": 3600})
    log.info("many", attempts=[{"auth": f"Bearer {ACCESS}"}, f"refresh_token={REFRESH}"],
             pair=("x", {"client_secret": SECRET}))
    one, two, _three = _clean(lines())
    assert one["headers"]["Accept"] == "json"
    assert two["response"]["expires_in"] == 3600


def test_exceptions_are_scrubbed(lines: Any) -> None:
    log = structlog.get_logger("t")
    try:
        raise RuntimeError(f"401 for Bearer {ACCESS} after refresh_token={REFRESH}")
    except RuntimeError:
        log.exception("refresh_failed")
    (record,) = _clean(lines())
    assert "RuntimeError" in record["exception"]


def test_objects_with_secrets_render_without_them(lines: Any) -> None:
    tokens = TokenSet(ACCESS, REFRESH, dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    creds = ClientCredentials("blueclerk-local", SECRET, "http://localhost/cb")
    structlog.get_logger("t").info("connected", tokens=tokens, credentials=creds,
                                   as_text=f"{tokens!r} {creds!r}")
    (record,) = _clean(lines())
    assert "blueclerk-local" in record["as_text"]


def test_bound_context_is_redacted(lines: Any) -> None:
    structlog.contextvars.bind_contextvars(account_id="a-1", refresh_token=REFRESH)
    try:
        structlog.get_logger("t").bind(access_token=ACCESS).info("work")
    finally:
        structlog.contextvars.unbind_contextvars("account_id", "refresh_token")
    (record,) = _clean(lines())
    assert record["account_id"] == "a-1"


def test_harmless_keys_are_kept(lines: Any) -> None:
    structlog.get_logger("t").info("done", idempotency_key="abc123", key="a-1/customer/c-1",
                                   partition_key="a-1", token_version=4, tokens_refreshed=1)
    (record,) = _clean(lines())
    assert record["idempotency_key"] == "abc123"
    assert record["key"] == "a-1/customer/c-1"
    assert record["token_version"] == 4


def test_redact_processor_directly() -> None:
    out = redact(None, "info", {"event": f"Bearer {ACCESS}", "refresh_token": REFRESH,
                                "nested": {"inner": {"access_token": ACCESS}}})
    text = json.dumps(out, default=str)
    for secret in SECRETS:
        assert secret not in text


@pytest.mark.parametrize("text", [
    f"GET /oauth/callback?code={REFRESH}&state=s1&realmId=9341",
    f"grant_type=authorization_code&code_verifier={REFRESH}&redirect_uri=x",
    f"client_id=abc&client_secret={SECRET}",
    f"Authorization: Basic {ACCESS}",
    f"Authorization: Bearer {ACCESS}",
    f'{{"client_secret": "{SECRET}", "grant_type": "refresh_token"}}',
    f"{{'refresh_token': '{REFRESH}', 'expires_in': 3600}}",
    f"postgresql://blueclerk:{SECRET}@127.0.0.1:5432/sync",
])
def test_secret_shapes_in_free_text(text: str) -> None:
    from schemas.redaction import scrub

    cleaned = scrub(text)
    for secret in SECRETS:
        assert secret not in cleaned, cleaned
    assert "[redacted]" in cleaned


def test_words_that_merely_contain_secret_names_survive() -> None:
    from schemas.redaction import scrub

    text = "error_code=timeout barcode=123 token_version=4 status_code=429"
    assert scrub(text) == text


def test_standard_library_loggers_and_tracebacks_are_redacted() -> None:
    """uvicorn, authlib, httpx and SQLAlchemy log through the standard library: their
    records, arguments and exception tracebacks pass the same redaction (a process of
    its own, so pytest's log capture is not in the way)."""
    import subprocess
    import sys

    program = f"""
import logging
from service.logging import configure_logging
configure_logging("debug")
logging.getLogger("authlib").warning("token response %s", {{"refresh_token": "{REFRESH}"}})
logging.getLogger("uvicorn.error").info('"GET /oauth/callback?code=%s HTTP/1.1"', "{REFRESH}")
try:
    raise RuntimeError("could not connect to postgresql://u:{SECRET}@db/x")
except RuntimeError:
    logging.getLogger("sqlalchemy").exception("failed")
"""
    err = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                         check=True).stderr
    assert "token response" in err and "failed" in err and "RuntimeError" in err
    for secret in SECRETS:
        assert secret not in err, err


def test_bytes_values_are_decoded_and_redacted(lines: Any) -> None:
    structlog.get_logger("t").info("body", body=f"refresh_token={REFRESH}".encode())
    _clean(lines())
