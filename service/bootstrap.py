"""Wires the service from Settings: database, token store, providers, engine, Kafka."""

from __future__ import annotations

from dataclasses import dataclass

from consumers.engine import RetryPolicy, SyncEngine
from consumers.worker import Worker, WorkerOptions
from producers.dead_letters import KafkaDeadLetterSink
from producers.kafka import make_producer
from producers.outbox import OutboxPublisher
from schemas.codec import AvroCodec
from service.config import ConfigError, Settings
from service.logging import configure_logging
from service.memory import MemoryTrimmer
from service.providers import ProviderDirectory
from state.connections import ConnectionStore
from state.crypto import TokenCipher
from state.db import Database, migrate

__all__ = ["Services", "build_services", "build_worker", "settings_from_env"]


def settings_from_env() -> Settings:
    """Settings for a command-line process, with its JSON logging configured."""
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        raise SystemExit(f"error: {exc}") from None
    configure_logging(settings.log_level)
    return settings


@dataclass
class Services:
    settings: Settings
    db: Database
    connections: ConnectionStore
    providers: ProviderDirectory
    codec: AvroCodec
    cipher: TokenCipher

    def close(self) -> None:
        self.providers.close()
        self.db.dispose()


def build_services(settings: Settings, run_migrations: bool = True) -> Services:
    if run_migrations:
        migrate(settings.database_url)
    db = Database(settings.database_url, pool_size=max(10, settings.max_in_flight))
    cipher = TokenCipher(settings.token_key)
    connections = ConnectionStore(db, cipher)
    return Services(settings, db, connections, ProviderDirectory(settings, connections),
                    AvroCodec(settings.schema_registry_url), cipher)


def build_engine(services: Services, dead_letters: KafkaDeadLetterSink) -> SyncEngine:
    s = services.settings
    return SyncEngine(services.db, services.connections, services.providers.adapter,
                      services.codec, dead_letters,
                      RetryPolicy(s.retry_max_attempts, s.retry_base_delay_s, s.retry_max_delay_s))


def build_worker(services: Services) -> Worker:
    s = services.settings
    if not s.kafka_bootstrap:
        raise SystemExit("KAFKA_BOOTSTRAP_SERVERS is not set (start one with "
                         "`blueclerk-sync kafka`)")
    producer = make_producer(s.kafka_bootstrap)
    engine = build_engine(services, KafkaDeadLetterSink(producer, s.topics.dead_letter))
    outbox = OutboxPublisher(services.db, producer, s.topics)
    return Worker(engine, outbox, WorkerOptions(
        bootstrap=s.kafka_bootstrap, group_id=s.consumer_group, topics=s.topics.changes,
        max_in_flight=s.max_in_flight, max_batch=s.max_batch,
        group_protocol=s.consumer_group_protocol),
        housekeeping=MemoryTrimmer(s.malloc_trim_interval_s).due)
