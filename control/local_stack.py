"""`blueclerk-sync local-stack`: the whole service on this machine, for integrators.

Starts (or uses, with KAFKA_BOOTSTRAP_SERVERS) an Apache Kafka broker, creates every
topic, serves the three provider simulators, serves the control API on the OAuth
redirect's port (8700), starts a worker with its metrics and health port, prints every
address and the next commands to try, and runs until Ctrl-C or SIGTERM, when it stops
everything it started (worker first, so it drains and commits).

State (SQLite database, the local token key, `stack.env` with the variables the other
commands need) lives in `--state-dir`, by default `$XDG_STATE_HOME/blueclerk-sync/
local-stack` (`~/.local/state/...`), outside the source tree; it survives restarts, so a
connection made once stays connected.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

__all__ = ["default_state_dir", "register", "run_local_stack"]


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "blueclerk-sync" / "local-stack"


def register(sub: Any, func: Callable[[argparse.Namespace], int]) -> None:
    p = sub.add_parser("local-stack", help="start Kafka, the simulators, the control API and "
                       "a worker on this machine; print the addresses and what to try next",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--state-dir", type=Path, default=default_state_dir(),
                   help="database, token key and stack.env")
    p.add_argument("--api-port", type=int, default=8700,
                   help="control API port; the OAuth redirect URI points here")
    p.add_argument("--sandbox-port", type=int, default=8780, help="provider simulators' port")
    p.add_argument("--metrics-port", type=int, default=9400,
                   help="the worker's /metrics, /healthz/live and /healthz/ready")
    p.add_argument("--topic-prefix", default=os.environ.get("TOPIC_PREFIX", "blueclerk."))
    p.add_argument("--partitions", type=int, default=3, help="partitions per created topic")
    p.add_argument("--startup-timeout", type=float, default=120.0,
                   help="seconds to wait for the API and the worker to become ready")
    p.set_defaults(func=func)


def _say(line: str = "") -> None:
    print(line, flush=True)


def _wait_http(url: str, timeout: float, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} while starting; "
                               f"its output is above")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{what} was not ready at {url} within {timeout:.0f}s")


def _stop(process: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(timeout=10)


def run_local_stack(args: argparse.Namespace) -> int:
    from producers.kafka import ensure_topics
    from sandbox.app import create_sandbox
    from sandbox.kafka_broker import KafkaBroker
    from sandbox.serve import serve_in_thread
    from service.config import Topics
    from state.crypto import generate_key
    from state.db import migrate

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    state: Path = args.state_dir
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_file = state / "token.key"
    if not key_file.exists():
        key_file.write_text(generate_key())
        key_file.chmod(0o600)
    db_url = os.environ.get("DATABASE_URL") or f"sqlite:///{state / 'sync.db'}"
    topics = Topics(args.topic_prefix)

    with ExitStack() as stack:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        kafka_origin = "from KAFKA_BOOTSTRAP_SERVERS"
        if not bootstrap:
            _say("starting Apache Kafka (KRaft, loopback)…")
            bootstrap = stack.enter_context(KafkaBroker()).bootstrap_servers
            kafka_origin = "started here"
        # Topics exist before the worker subscribes (no UNKNOWN_TOPIC_OR_PART).
        ensure_topics(bootstrap, [*topics.changes, topics.dead_letter, topics.inbound],
                      partitions=args.partitions)
        ensure_topics(bootstrap, [topics.status], partitions=args.partitions,
                      compacted=(topics.status,))
        sandbox = stack.enter_context(serve_in_thread(create_sandbox(), args.sandbox_port or None))
        migrate(db_url)

        api_url = f"http://127.0.0.1:{args.api_port}"
        env = {**os.environ, "BLUECLERK_MODE": os.environ.get("BLUECLERK_MODE", "local"),
               "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "DATABASE_URL": db_url,
               "TOKEN_ENCRYPTION_KEY": os.environ.get("TOKEN_ENCRYPTION_KEY")
               or key_file.read_text().strip(),
               "SANDBOX_URL": sandbox, "TOPIC_PREFIX": topics.prefix,
               "OAUTH_REDIRECT_URI": f"{api_url}/oauth/callback",
               "LOG_LEVEL": os.environ.get("LOG_LEVEL", "warning")}
        shared = {k: env[k] for k in ("BLUECLERK_MODE", "KAFKA_BOOTSTRAP_SERVERS",
                                      "DATABASE_URL", "TOKEN_ENCRYPTION_KEY", "SANDBOX_URL",
                                      "TOPIC_PREFIX", "OAUTH_REDIRECT_URI")}
        env_file = state / "stack.env"
        env_file.write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in shared.items()))
        env_file.chmod(0o600)

        command = [sys.executable, "-m", "control.cli"]
        api = subprocess.Popen([*command, "serve-api", "--port", str(args.api_port)], env=env)
        stack.callback(_stop, api)
        worker = subprocess.Popen([*command, "worker"],
                                  env={**env, "METRICS_PORT": str(args.metrics_port)})
        stack.callback(_stop, worker)  # callbacks run last-in first-out: the worker first
        health = f"http://127.0.0.1:{args.metrics_port}"
        try:
            _wait_http(f"{api_url}/healthz", args.startup_timeout, api, "the control API")
            _wait_http(f"{health}/healthz/ready", args.startup_timeout, worker, "the worker")
        except RuntimeError as exc:
            print(f"error: {exc}. Free the port or choose another (`blueclerk-sync "
                  f"local-stack --api-port/--sandbox-port/--metrics-port`)", file=sys.stderr)
            return 2

        token = os.environ.get("CONTROL_API_TOKEN", "local-control-token")
        _say(f"""
BlueClerk local stack is up. Ctrl-C stops everything.

  kafka          {bootstrap} ({kafka_origin})
  simulators     {sandbox}  (/quickbooks, /xero, /freshbooks)
  control API    {api_url}  (OpenAPI {api_url}/docs; token {token})
  worker         pid {worker.pid}; {health}/metrics, {health}/healthz/ready
  topics         {', '.join(topics.changes)}; statuses on {topics.status}
  state          {state}  (sync.db, token.key, stack.env)

Next, in another terminal:

  set -a; . {shlex.quote(str(env_file))}; set +a
  blueclerk-sync connect --account acct-1 --provider quickbooks
      # open the URL, approve on the simulator's page; then, with the address the browser
      # lands on (or says binding_mismatch on):
  blueclerk-sync callback --url '<that address>'
  python producing_example.py   # the example in docs/producing.md, saved to a file
  blueclerk-sync status --account acct-1
  blueclerk-sync report --account acct-1
  curl -H 'Authorization: Bearer {token}' {api_url}/v1/accounts/acct-1/status
""")
        while not stop.wait(0.5):
            for name, process in (("the worker", worker), ("the control API", api)):
                if process.poll() is not None:
                    print(f"error: {name} exited with {process.returncode}; see its output "
                          "above, then run `blueclerk-sync local-stack` again",
                          file=sys.stderr)
                    return 1
        _say("stopping: worker (drains and commits), control API, simulators, Kafka…")
    _say("stopped")
    return 0
