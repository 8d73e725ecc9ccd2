"""Configuration from the environment, with local defaults that run on one machine.

Every setting is an environment variable (twelve-factor); `Settings.from_env()` is the
only place that reads them. Secrets are kept out of `repr` so they never reach a log.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from providers.oauth import ClientCredentials, OAuthEndpoints
from providers.ratelimit import RateLimits

__all__ = ["LOCAL_MODES", "PROVIDERS", "ConfigError", "ProviderSettings", "Settings", "Topics"]

PROVIDERS = ("quickbooks", "xero", "freshbooks")
# BLUECLERK_MODE values in which local defaults (a generated key, the sandbox client and
# control token) are allowed; anything else is production and must be configured.
LOCAL_MODES = ("local", "sandbox")
_LOCAL_CONTROL_TOKEN = "local-control-token"
_LOCAL_CLIENT_SECRET = "local-secret"
_ENV_PREFIX = {"quickbooks": "QBO", "xero": "XERO", "freshbooks": "FRESHBOOKS"}


class ConfigError(RuntimeError):
    """The environment does not configure what the service needs to run safely."""
_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class Topics:
    prefix: str = "blueclerk."

    def entity(self, entity_type: str) -> str:
        return f"{self.prefix}{entity_type}s"

    @property
    def changes(self) -> list[str]:
        return [self.entity(e) for e in ("customer", "item", "invoice", "payment")]

    @property
    def status(self) -> str:
        return f"{self.prefix}sync-status"

    @property
    def dead_letter(self) -> str:
        return f"{self.prefix}accounting-sync.dlq"

    @property
    def inbound(self) -> str:
        return f"{self.prefix}accounting-changes"


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    name: str
    api_base: str
    oauth: OAuthEndpoints
    credentials: ClientCredentials
    limits: RateLimits
    identity_url: str = ""  # Xero connections / FreshBooks users/me
    app_per_minute: int | None = None  # a limit across all connections of this app


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _limits(prefix: str, per_minute: int, concurrent: int, per_day: int | None) -> RateLimits:
    day = os.environ.get(f"{prefix}_RATE_PER_DAY")
    return RateLimits(
        per_minute=int(_env(f"{prefix}_RATE_PER_MINUTE", str(per_minute))),
        concurrent=int(_env(f"{prefix}_CONCURRENT", str(concurrent))),
        per_day=int(day) if day else per_day,
    )


def _providers(sandbox: str | None, redirect_uri: str) -> dict[str, ProviderSettings]:
    def url(real: str, local: str) -> str:
        return f"{sandbox.rstrip('/')}{local}" if sandbox else real

    def creds(prefix: str) -> ClientCredentials:
        return ClientCredentials(_env(f"{prefix}_CLIENT_ID", "blueclerk-local"),
                                 _env(f"{prefix}_CLIENT_SECRET", _LOCAL_CLIENT_SECRET),
                                 redirect_uri)

    qbo_api = "https://quickbooks.api.intuit.com/v3/company"
    return {
        "quickbooks": ProviderSettings(
            "quickbooks",
            _env("QBO_API_BASE", url(qbo_api, "/quickbooks/v3/company")),
            OAuthEndpoints(
                url("https://appcenter.intuit.com/connect/oauth2", "/quickbooks/connect/oauth2"),
                url("https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer",
                    "/quickbooks/oauth2/v1/tokens/bearer"),
                url("https://developer.api.intuit.com/v2/oauth2/tokens/revoke",
                    "/quickbooks/v2/oauth2/tokens/revoke"),
                "com.intuit.quickbooks.accounting", revoke_style="json_basic"),
            creds("QBO"), _limits("QBO", 500, 10, None)),
        "xero": ProviderSettings(
            "xero",
            _env("XERO_API_BASE", url("https://api.xero.com/api.xro/2.0", "/xero/api.xro/2.0")),
            OAuthEndpoints(
                url("https://login.xero.com/identity/connect/authorize",
                    "/xero/identity/connect/authorize"),
                url("https://identity.xero.com/connect/token", "/xero/connect/token"),
                url("https://identity.xero.com/connect/revocation", "/xero/connect/revocation"),
                "offline_access accounting.contacts accounting.settings accounting.invoices "
                "accounting.payments", revoke_style="form_basic"),
            creds("XERO"), _limits("XERO", 60, 5, 5000),
            identity_url=url("https://api.xero.com/connections", "/xero/connections"),
            app_per_minute=int(_env("XERO_APP_RATE_PER_MINUTE", "10000"))),
        "freshbooks": ProviderSettings(
            "freshbooks",
            _env("FRESHBOOKS_API_BASE", url("https://api.freshbooks.com", "/freshbooks")),
            OAuthEndpoints(
                url("https://auth.freshbooks.com/oauth/authorize", "/freshbooks/oauth/authorize"),
                url("https://api.freshbooks.com/auth/oauth/token",
                    "/freshbooks/auth/oauth/token"),
                url("https://api.freshbooks.com/auth/oauth/revoke",
                    "/freshbooks/auth/oauth/revoke"),
                "user:profile:read user:clients:read user:clients:write user:invoices:read "
                "user:invoices:write user:payments:read user:payments:write "
                "user:billable_items:read user:billable_items:write user:taxes:read",
                token_auth_method="client_secret_post", use_pkce=False,
                revoke_style="json_body"),
            creds("FRESHBOOKS"), _limits("FRESHBOOKS", 100, 5, None),
            identity_url=url("https://api.freshbooks.com/auth/api/v1/users/me",
                             "/freshbooks/auth/api/v1/users/me")),
    }


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str | None
    database_url: str
    token_key: str = field(repr=False)
    topics: Topics = field(default_factory=Topics)
    schema_registry_url: str | None = None
    consumer_group: str = "blueclerk-accounting-sync"
    # CONSUMER_GROUP_PROTOCOL: "consumer" (KIP-848, Kafka 4.0+) or "classic"; both assign
    # partitions per topic (consumers/worker.py consumer_config).
    consumer_group_protocol: str = "consumer"
    # Engine threads per worker (MAX_IN_FLIGHT). Little's law: threads ~= runs per second
    # wanted x seconds per run, where a run is one event or one tenant's batch and its
    # time is mostly provider latency (one to three requests). 8 keeps ~130 runs/s in
    # flight at 60 ms per run, more than one worker's CPU records at ~2 ms per event;
    # raise it for slower providers, lower it on a small database. 32 was measured worse
    # than 4 on PostgreSQL (context switches, connections; issue 12).
    max_in_flight: int = 8
    # A tenant's ready events handed to the engine together (MAX_BATCH); their customers
    # and items go out in the provider's batch requests. 1 turns batching off.
    max_batch: int = 50
    # How often the worker gives malloc's free memory back (MALLOC_TRIM_INTERVAL_S; 0:
    # never): see service/memory.py.
    malloc_trim_interval_s: float = 60.0
    retry_max_attempts: int = 8
    retry_base_delay_s: float = 0.5
    retry_max_delay_s: float = 300.0
    http_timeout_s: float = 30.0
    sandbox_url: str | None = None
    providers: dict[str, ProviderSettings] = field(default_factory=dict, repr=False)
    control_token: str = field(default="local-control-token", repr=False)
    log_level: str = "info"
    metrics_port: int | None = None
    poll_inbound_s: float = 0.0
    mode: str = "local"
    # (provider, tenant id) pairs an operator allows several accounts to connect to.
    shared_companies: frozenset[tuple[str, str]] = frozenset()

    @classmethod
    def from_env(cls) -> Settings:
        """The settings, refusing unsafe production defaults: outside BLUECLERK_MODE=local
        (or sandbox) a real control token, client secrets and encryption key are required."""
        mode = _env("BLUECLERK_MODE", "production").strip().lower()
        if mode not in LOCAL_MODES:
            _require_production_secrets()
        sandbox = os.environ.get("SANDBOX_URL")
        redirect = _env("OAUTH_REDIRECT_URI", "http://127.0.0.1:8700/oauth/callback")
        metrics = os.environ.get("METRICS_PORT")
        return cls(
            kafka_bootstrap=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"),
            database_url=_env("DATABASE_URL", f"sqlite:///{_ROOT / 'var' / 'sync.db'}"),
            token_key=_token_key(mode),
            topics=Topics(_env("TOPIC_PREFIX", "blueclerk.")),
            schema_registry_url=os.environ.get("SCHEMA_REGISTRY_URL") or None,
            consumer_group=_env("CONSUMER_GROUP", "blueclerk-accounting-sync"),
            consumer_group_protocol=_env("CONSUMER_GROUP_PROTOCOL", "consumer").strip().lower(),
            max_in_flight=int(_env("MAX_IN_FLIGHT", "8")),
            max_batch=int(_env("MAX_BATCH", "50")),
            malloc_trim_interval_s=float(_env("MALLOC_TRIM_INTERVAL_S", "60")),
            retry_max_attempts=int(_env("RETRY_MAX_ATTEMPTS", "8")),
            retry_base_delay_s=float(_env("RETRY_BASE_DELAY_S", "0.5")),
            retry_max_delay_s=float(_env("RETRY_MAX_DELAY_S", "300")),
            http_timeout_s=float(_env("HTTP_TIMEOUT_S", "30")),
            sandbox_url=sandbox,
            providers=_providers(sandbox, redirect),
            control_token=_env("CONTROL_API_TOKEN", _LOCAL_CONTROL_TOKEN),
            log_level=_env("LOG_LEVEL", "info"),
            metrics_port=int(metrics) if metrics else None,
            poll_inbound_s=float(_env("POLL_INBOUND_S", "0")),
            mode=mode,
            shared_companies=_shared_companies(os.environ.get("SHARED_COMPANIES", "")),
        )


def _require_production_secrets() -> None:
    missing = []
    token = os.environ.get("CONTROL_API_TOKEN", "")
    if len(token) < 32 or token == _LOCAL_CONTROL_TOKEN:
        missing.append("CONTROL_API_TOKEN (at least 32 characters)")
    if not os.environ.get("TOKEN_ENCRYPTION_KEY"):
        missing.append("TOKEN_ENCRYPTION_KEY (a Fernet key: `blueclerk-sync generate-key`)")
    for prefix in _ENV_PREFIX.values():
        for part in ("CLIENT_ID", "CLIENT_SECRET"):
            value = os.environ.get(f"{prefix}_{part}", "")
            if not value or value in (_LOCAL_CLIENT_SECRET, "blueclerk-local"):
                missing.append(f"{prefix}_{part}")
    if missing:
        raise ConfigError(
            "refusing to start in production mode without: " + ", ".join(missing)
            + ". Set them (Kubernetes: the blueclerk-sync secret), or set BLUECLERK_MODE=local "
            "to run against the local simulators with generated local secrets")


def _shared_companies(raw: str) -> frozenset[tuple[str, str]]:
    pairs = set()
    for item in filter(None, (p.strip() for p in raw.split(","))):
        provider, sep, tenant = item.partition(":")
        if not sep or provider not in PROVIDERS or not tenant:
            raise ConfigError(f"SHARED_COMPANIES entry {item!r} must be provider:tenant_id "
                              f"with provider one of {', '.join(PROVIDERS)}")
        pairs.add((provider, tenant))
    return frozenset(pairs)


def _token_key(mode: str) -> str:
    """TOKEN_ENCRYPTION_KEY, or in local mode a key kept in var/ (mode 0600)."""
    key = os.environ.get("TOKEN_ENCRYPTION_KEY")
    if key:
        return key
    if mode not in LOCAL_MODES:
        raise ConfigError("TOKEN_ENCRYPTION_KEY is required outside BLUECLERK_MODE=local")
    from state.crypto import generate_key

    path = Path(_env("LOCAL_KEY_FILE", str(_ROOT / "var" / "token.key")))
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(generate_key())
        path.chmod(0o600)
    return path.read_text().strip()
