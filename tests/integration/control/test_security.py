"""Production-safe configuration, the control API's guard, disconnect that fails closed,
and a whole connect -> wizard -> sync -> disconnect run that leaks no secret anywhere."""

from __future__ import annotations

import dataclasses
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer
from fastapi.testclient import TestClient
from sqlalchemy import select

from control.api import MAX_BODY_BYTES, create_control_app
from control.oauth_flow import sandbox_consent
from sandbox.scenario import EventFactory
from sandbox.serve import free_port, serve_in_thread
from schemas.codec import AvroCodec
from schemas.events import SCHEMA_BY_ENTITY, event_to_avro
from service.bootstrap import Services, build_services
from service.config import ConfigError, Settings, Topics
from state.crypto import generate_key
from state.models import DeadLetter, OutboxMessage

TOKEN = "security-token-0123456789abcdef-XYZ"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CODEC = AvroCodec()


@pytest.fixture
def services(monkeypatch: pytest.MonkeyPatch, sandbox_url: str, sqlite_url: str,
             kafka_bootstrap: str, topics: Topics) -> Iterator[Services]:
    for name, value in {"SANDBOX_URL": sandbox_url, "DATABASE_URL": sqlite_url,
                        "TOKEN_ENCRYPTION_KEY": generate_key(), "CONTROL_API_TOKEN": TOKEN,
                        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
                        "TOPIC_PREFIX": topics.prefix, "RETRY_MAX_ATTEMPTS": "1"}.items():
        monkeypatch.setenv(name, value)
    built = build_services(Settings.from_env())
    yield built
    built.close()


# --------------------------------------------------------------------------- configuration


_PRODUCTION = {"CONTROL_API_TOKEN": "p" * 40, "TOKEN_ENCRYPTION_KEY": generate_key(),
               **{f"{p}_{part}": f"{p.lower()}-{part.lower()}-real"
                  for p in ("QBO", "XERO", "FRESHBOOKS")
                  for part in ("CLIENT_ID", "CLIENT_SECRET")}}


def test_production_mode_refuses_local_secrets(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    monkeypatch.delenv("BLUECLERK_MODE", raising=False)  # production is the default
    monkeypatch.setenv("LOCAL_KEY_FILE", str(tmp_path / "token.key"))
    for name in _PRODUCTION:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError) as refused:
        Settings.from_env()
    for name in ("CONTROL_API_TOKEN", "TOKEN_ENCRYPTION_KEY", "QBO_CLIENT_SECRET",
                 "XERO_CLIENT_ID", "FRESHBOOKS_CLIENT_SECRET"):
        assert name in str(refused.value)
    assert not (tmp_path / "token.key").exists()  # no per-pod key generated
    monkeypatch.setenv("CONTROL_API_TOKEN", "local-control-token")
    with pytest.raises(ConfigError):
        Settings.from_env()
    for name, value in _PRODUCTION.items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_env()
    assert settings.mode == "production"
    assert TOKEN not in repr(settings) and _PRODUCTION["TOKEN_ENCRYPTION_KEY"] not in repr(
        settings)


def test_the_cli_says_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    import sys

    env = {k: v for k, v in __import__("os").environ.items()
           if k != "BLUECLERK_MODE" and not k.endswith(("_CLIENT_SECRET", "_CLIENT_ID"))}
    env.pop("CONTROL_API_TOKEN", None)
    run = subprocess.run([sys.executable, "-m", "control.cli", "status", "--account", "a"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert "refusing to start in production mode" in run.stderr
    assert "BLUECLERK_MODE=local" in run.stderr


# --------------------------------------------------------------------------- API guard


def _raw_request(url: str, head: str, timeout: float = 5.0) -> tuple[int, float]:
    """Send only the request head (a body is promised, never sent) and time the answer."""
    host, port = url.removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(head.encode())
        answer = sock.recv(4096).decode(errors="replace")
    return int(answer.split()[1]), time.monotonic() - started


def test_unauthenticated_or_oversized_bodies_are_refused_before_reading(
        services: Services) -> None:
    path = "/v1/accounts/acct-1/wizard/customers/import"
    with serve_in_thread(create_control_app(services)) as url:
        head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {20 * 1024 * 1024}\r\n")
        status, seconds = _raw_request(url, head + "\r\n")
        assert status == 401 and seconds < 3  # answered without waiting for 20 MB
        status, seconds = _raw_request(url, head + f"Authorization: Bearer {TOKEN}\r\n\r\n")
        assert status == 413 and seconds < 3
        # A chunked body without a length is cut off at the cap too.
        r = httpx.post(url + path, headers=AUTH,
                       content=iter([b"x" * 65536] * (MAX_BODY_BYTES // 65536 + 2)))
        assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
        r = httpx.post(url + path, json={"selections": []})
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"


# --------------------------------------------------------------------------- disconnect


def _connect(api: TestClient, account: str, realm: str) -> None:
    start = api.post(f"/v1/accounts/{account}/connection", json={"provider": "quickbooks"},
                     headers=AUTH).json()
    redirect = sandbox_consent(start["authorization_url"], tenant=realm)
    r = api.get("/oauth/callback", params=redirect)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("revoke", ["unreachable", "refused"])
def test_disconnect_fails_closed(services: Services, sandbox_url: str, revoke: str) -> None:
    """Whatever the revoke endpoint does, the account ends disconnected with its tokens
    deleted, and the reply says truthfully that the provider did not confirm."""
    account, realm = f"acct-{uuid.uuid4().hex[:8]}", f"9341{uuid.uuid4().int % 10**9}"
    with TestClient(create_control_app(services)) as api:
        _connect(api, account, realm)
        config = services.settings.providers["quickbooks"]
        url = f"http://127.0.0.1:{free_port()}/revoke" if revoke == "unreachable" \
            else f"{sandbox_url}/quickbooks/no-such-revoke-endpoint"
        services.settings.providers["quickbooks"] = dataclasses.replace(
            config, oauth=dataclasses.replace(config.oauth, revoke_url=url))
        try:
            r = api.post(f"/v1/accounts/{account}/disconnect", headers=AUTH)
        finally:
            services.settings.providers["quickbooks"] = config
        body = r.json()
        assert r.status_code == 200, r.text
        assert (body["status"], body["tokens_revoked"], body["tokens_deleted"]) == (
            "disconnected", False, True)
        assert "did not confirm" in body["revoke_error"]
        info = services.connections.get(account)
        assert info is not None and info.status == "disconnected"
        from state.models import Connection

        with services.db.transaction() as s:
            row = s.get(Connection, account)
            assert row is not None and row.access_token is None and row.refresh_token is None


# --------------------------------------------------------------------------- no secret leaks


def test_no_secret_reaches_logs_statuses_dead_letters_or_replies(
        services: Services, sandbox_url: str, topics: Topics, kafka_bootstrap: str,
        capfd: pytest.CaptureFixture[str]) -> None:
    """Connect, walk the wizard, sync (one event dead-lettered by a failing provider),
    disconnect, with DEBUG logs; then look for every secret involved in every log line,
    status event, dead-letter row and header, and API reply: zero hits."""
    from service.logging import configure_logging

    configure_logging("debug")
    account, realm = f"acct-{uuid.uuid4().hex[:8]}", f"9341{uuid.uuid4().int % 10**9}"
    replies: list[str] = []
    secrets: set[str] = {TOKEN, services.settings.token_key, "local-secret"}

    with TestClient(create_control_app(services)) as api:
        def call(method: str, path: str, **kwargs: Any) -> Any:
            r = api.request(method, f"/v1/accounts/{account}{path}", headers=AUTH, **kwargs)
            replies.append(r.text)
            return r.json()

        start = call("POST", "/connection", json={"provider": "quickbooks"})
        # The one reply meant to carry the binding: to whoever started the connection.
        start_reply = replies.pop()
        secrets.add(start["binding"])
        redirect = sandbox_consent(start["authorization_url"], tenant=realm)
        secrets.add(redirect["code"])
        r = api.get("/oauth/callback", params=redirect)
        replies.append(r.text)
        assert r.status_code == 200, r.text
        tokens = services.connections.current(account)
        secrets |= {tokens.access_token, tokens.refresh_token}
        # A replayed code and a bad token: error paths carry the secrets they were given.
        replies.append(api.post("/v1/oauth/callback", headers=AUTH, json=redirect).text)
        replies.append(api.get(f"/v1/accounts/{account}/status",
                               headers={"Authorization": f"Bearer {tokens.access_token}"}).text)
        for path in ("/wizard/customers", "/wizard/items", "/wizard/income-accounts",
                     "/wizard/summary", "/status"):
            call("GET", path)
        engine = api.app.state.control.engine()  # type: ignore[attr-defined]
        factory = EventFactory(account)
        ok = factory.customer("c1", "Ada Lovelace", email="ada@example.com")
        assert engine.process(ok, CODEC.encode(SCHEMA_BY_ENTITY[ok.entity_type],
                                               event_to_avro(ok))).statuses
        httpx.put(f"{sandbox_url}/quickbooks/_sandbox/faults/{realm}",
                  json={"error_rate": 1.0}, timeout=10)
        failing = factory.customer("c2", "Grace Hopper")
        statuses = engine.process(failing, CODEC.encode(SCHEMA_BY_ENTITY[failing.entity_type],
                                                        event_to_avro(failing))).statuses
        assert statuses[-1].status.value == "dead_lettered"
        httpx.delete(f"{sandbox_url}/quickbooks/_sandbox/faults", timeout=10)
        call("POST", "/disconnect")
        api.app.state.control.publish()  # type: ignore[attr-defined]

    logs = capfd.readouterr()
    haystacks = {"logs": logs.out + logs.err, "replies": "\n".join(replies)}
    with services.db.transaction() as s:
        outbox = list(s.execute(select(OutboxMessage)).scalars())
        haystacks["statuses"] = "\n".join(
            str(CODEC.decode(m.value).value) + (m.message or "") for m in outbox)
        haystacks["dead_letter_rows"] = "\n".join(
            f"{d.reason} {d.error_code}" for d in s.execute(select(DeadLetter)).scalars())
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": str(uuid.uuid4()),
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topics.dead_letter])
    headers: list[str] = []
    deadline = time.monotonic() + 20
    while not headers and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and not message.error():
            headers.append(str(message.headers()))
    consumer.close()
    assert headers, "the dead letter was not produced"
    haystacks["dead_letter_headers"] = "\n".join(headers)
    assert haystacks["logs"] and haystacks["statuses"] and haystacks["dead_letter_rows"]
    hits = {(where, secret[:6]) for where, text in haystacks.items() for secret in secrets
            if secret and secret in text}
    assert hits == set()
    assert [s[:6] for s in secrets - {start["binding"]} if s in start_reply] == []
