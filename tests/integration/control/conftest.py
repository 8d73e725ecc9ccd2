"""What the control-plane tests share: services over the simulators (on SQLite and
PostgreSQL) and the control API (helpers to drive it: sandbox/control_client.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from control.api import create_control_app
from service.bootstrap import Services, build_services
from service.config import Settings, Topics
from state.crypto import generate_key

CONTROL_TOKEN = "control-tests-token"


@pytest.fixture
def control_services(monkeypatch: pytest.MonkeyPatch, sandbox_url: str, database_url: str,
                     kafka_bootstrap: str, topics: Topics) -> Iterator[Services]:
    for name, value in {"SANDBOX_URL": sandbox_url, "DATABASE_URL": database_url,
                        "TOKEN_ENCRYPTION_KEY": generate_key(),
                        "CONTROL_API_TOKEN": CONTROL_TOKEN,
                        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
                        "TOPIC_PREFIX": topics.prefix}.items():
        monkeypatch.setenv(name, value)
    built = build_services(Settings.from_env())
    yield built
    built.close()


@pytest.fixture
def control_api(control_services: Services) -> Iterator[TestClient]:
    with TestClient(create_control_app(control_services)) as client:
        yield client
