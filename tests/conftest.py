"""Session-scoped real services: a Kafka broker, the provider sandbox, PostgreSQL."""

from __future__ import annotations

import gc
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from producers.kafka import ensure_topics
from sandbox.app import create_sandbox
from sandbox.kafka_broker import KafkaBroker
from sandbox.serve import serve_in_thread
from service.config import Topics

# The suite runs the service against the local simulators with local secrets; production
# mode (the default) would rightly refuse to start without real ones.
os.environ.setdefault("BLUECLERK_MODE", "local")


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A real Apache Kafka broker: the one in KAFKA_BOOTSTRAP_SERVERS, or a local KRaft
    node launched from Maven jars. Never mocked, never skipped."""
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
        return
    with KafkaBroker() as broker:
        yield broker.bootstrap_servers
        # Let clients the tests dropped be destroyed while the broker still answers,
        # instead of logging connection failures after it stops.
        gc.collect()


@pytest.fixture(scope="session")
def sandbox_url() -> Iterator[str]:
    with serve_in_thread(create_sandbox(seed=7, fast_limits=True)) as url:
        yield url


@pytest.fixture
def topics(kafka_bootstrap: str) -> Topics:
    """Fresh topics per test, so tests never read each other's events."""
    t = Topics(f"t{uuid.uuid4().hex[:10]}.")
    ensure_topics(kafka_bootstrap, [*t.changes, t.dead_letter, t.inbound, t.status])
    return t


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = os.environ.get("TEST_POSTGRES_URL")
    if not url:
        raise RuntimeError("TEST_POSTGRES_URL is not set: run the suite with `make test`, "
                           "which starts PostgreSQL (scripts/ensure-postgres.sh)")
    return url


def _fresh_postgres(base_url: str) -> str:
    import sqlalchemy

    name = f"bc_{uuid.uuid4().hex[:12]}"
    engine = sqlalchemy.create_engine(base_url.replace("postgresql://", "postgresql+psycopg://"),
                                      isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return base_url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database on each backend the service supports."""
    from state.db import migrate

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
    else:
        url = _fresh_postgres(request.getfixturevalue("postgres_url"))
    migrate(url)
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    from state.db import migrate

    url = f"sqlite:///{tmp_path / 'state.db'}"
    migrate(url)
    return url


@pytest.fixture
def fresh_postgres_url(postgres_url: str) -> str:
    """An empty, migrated PostgreSQL database of its own (multi-process tests)."""
    from state.db import migrate

    url = _fresh_postgres(postgres_url)
    migrate(url)
    return url


_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A skipped test fails the run: every service a test needs is started, not assumed."""
    if _skipped and exitstatus == 0:
        print(f"\n{len(_skipped)} test(s) skipped, which this suite does not allow: "
              f"{_skipped[:5]}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
