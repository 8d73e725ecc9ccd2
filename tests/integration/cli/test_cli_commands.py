"""Every `blueclerk-sync` command, run as a user runs it (its own process, no LOG_LEVEL):
`--help` shows the defaults, and a normal call answers first and prints no warning
(Python warnings, deprecation notices, warning-level log lines, librdkafka warnings)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from control.cli import build_parser
from control.oauth_flow import sandbox_consent
from producers.kafka import make_producer
from sandbox.control_client import new_tenant
from sandbox.schema_registry import create_schema_registry
from sandbox.serve import free_port, serve_in_thread
from service.config import Topics
from state.crypto import generate_key

REPO = Path(__file__).resolve().parents[3]
# A configured control API (unset webhook secrets are rightly warned about at start-up).
WEBHOOK_SECRETS = {"QBO_WEBHOOK_VERIFIER": "qbo-verifier", "XERO_WEBHOOK_KEY": "xero-key",
                   "FRESHBOOKS_WEBHOOK_VERIFIER": "fb-verifier"}
# What counts as a warning on the terminal.
WARNING = re.compile(r"Warning\b|warnings\.warn|\"level\": \"warning\"|^WARNING |%[1-4]\|"
                     r"|UNKNOWN_TOPIC|deprecated", re.MULTILINE)


def _commands() -> list[list[str]]:
    """Every command path of the parser (`wizard` has its own sub-commands)."""
    import argparse

    out: list[list[str]] = []

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            out.append(path)
            return
        for name, child in subs[0].choices.items():
            walk(child, [*path, name])

    walk(build_parser(), [])
    return out


@pytest.fixture
def cli_env(kafka_bootstrap: str, sandbox_url: str, topics: Topics, tmp_path: Path
            ) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LOG_LEVEL", "PYTHONWARNINGS")}
    # A fresh broker loads its transaction coordinator on the first idempotent producer
    # (librdkafka warns "Coordinator load in progress" while it does); do that here.
    warm = make_producer(kafka_bootstrap)
    warm.produce(topics.dead_letter, key=b"warm-up", value=b"")
    assert warm.flush(60) == 0
    env.update({"BLUECLERK_MODE": "local", "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
                "SANDBOX_URL": sandbox_url, "TOPIC_PREFIX": topics.prefix,
                "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
                "TOKEN_ENCRYPTION_KEY": generate_key(), "XDG_STATE_HOME": str(tmp_path)})
    return env


def _run(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "control.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


# Runs several commands through the real entry point (`control.cli.main`) in one fresh
# process, each call's output fenced, so the suite pays Python's start-up once per batch.
_DRIVER = """
import json, sys
from control.cli import main
for args in json.loads(sys.argv[1]):
    for stream in (sys.stdout, sys.stderr):
        print("@@@ " + json.dumps(args), file=stream, flush=True)
    try:
        code = main(args)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    for stream in (sys.stdout, sys.stderr):
        print("@@@ exit %d" % code, file=stream, flush=True)
"""


def _fenced(text: str) -> list[str]:
    return re.findall(r"^@@@ \[.*?\]\n(.*?)^@@@ exit -?\d+$", text, re.S | re.M)


def _batch(env: dict[str, str], commands: list[list[str]], timeout: float = 300
           ) -> list[tuple[int, str, str]]:
    """(exit code, stdout, stderr) of each command, run in order in one process."""
    result = subprocess.run([sys.executable, "-c", _DRIVER, json.dumps(commands)], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout + result.stderr
    codes = [int(c) for c in re.findall(r"^@@@ exit (-?\d+)$", result.stdout, re.M)]
    outs, errs = _fenced(result.stdout), _fenced(result.stderr)
    assert len(codes) == len(outs) == len(errs) == len(commands), result.stdout + result.stderr
    # Anything outside the fences (start-up, shutdown) counts too.
    stray = re.sub(r"^@@@ \[.*?^@@@ exit -?\d+\n", "", result.stdout + result.stderr,
                   flags=re.S | re.M)
    assert not WARNING.search(stray), stray
    return list(zip(codes, outs, errs, strict=True))


def _clean(code: int, out: str, err: str, *, expected: int = 0) -> str:
    """The call's stdout, after checking its exit code and that nothing warned."""
    assert code == expected, out + err
    assert not WARNING.search(out + err), f"a warning reached the terminal:\n{out}{err}"
    return out


@pytest.fixture
def registry() -> Iterator[str]:
    with serve_in_thread(create_schema_registry()) as url:
        yield url


def test_every_help_shows_defaults_without_warnings(cli_env: dict[str, str]) -> None:
    commands = _commands()
    assert {"local-stack", "register-schemas", "report", "worker"} <= {c[0] for c in commands}
    results = _batch(cli_env, [[*c, "--help"] for c in commands])
    helps = {}
    for command, (code, out, err) in zip(commands, results, strict=True):
        assert _clean(code, out, err).startswith("usage: blueclerk-sync"), (command, out)
        helps[" ".join(command)] = out
    top = _run(cli_env, "--help")
    assert _clean(top.returncode, top.stdout, top.stderr).startswith("usage: blueclerk-sync")
    assert "(default: 8700)" in helps["serve-api"]
    assert "(default: 8700)" in helps["local-stack"] and "(default: 9400)" in helps["local-stack"]
    assert "(default: BACKWARD)" in helps["register-schemas"]
    assert "(default: 20)" in helps["status"]
    assert "(default: None)" not in "".join(helps.values())


def _service(env: dict[str, str], args: list[str], url: str, timeout: float = 90
             ) -> tuple[int, str]:
    """Start a long-running command, wait until `url` answers 200, stop it with SIGTERM."""
    process = subprocess.Popen([sys.executable, "-m", "control.cli", *args], cwd=REPO,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            assert process.poll() is None, process.communicate()[0]
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"{args} never answered {url}"
            time.sleep(0.3)
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=60)[0]
    return process.returncode, output


def test_every_command_answers_without_warnings(cli_env: dict[str, str], registry: str,
                                                sandbox_url: str) -> None:
    env = cli_env
    account, realm = f"acct-{uuid.uuid4().hex[:6]}", new_tenant("quickbooks")
    a = ["--account", account]
    first = _batch(env, [["generate-key"], ["migrate"],
                         ["register-schemas", "--registry", registry],
                         ["connect", *a, "--provider", "quickbooks"]])
    key, migrated, registered, connect = (_clean(*r) for r in first)
    assert len(key.strip()) == 44 and migrated.startswith("migrated")
    assert registered.count("BACKWARD") == 6
    redirect = sandbox_consent(connect.strip(), tenant=realm)
    callback = "http://127.0.0.1:8700/oauth/callback?" + urlencode(redirect)
    selections = Path(env["XDG_STATE_HOME"]) / "selections.json"
    selections.write_text(json.dumps({"selections": [{"provider_id": "1"}]}))
    # (command, may it be refused for this account's data?)
    story: list[tuple[list[str], bool]] = [
        (["callback", "--url", callback], False),
        (["choose-organisation", "--state", "no-such-state", "--tenant", "x"], True),
        *[(["wizard", step, *a], False) for step in
          ("progress", "start", "customers", "items", "accounts", "taxes", "summary")],
        (["wizard", "settings", *a, "--auto-sync", "on"], False),
        (["wizard", "skip", *a, "--step", "customers"], False),
        (["wizard", "import-customers", *a, "--import", "1"], True),
        (["wizard", "import-items", *a, "--file", str(selections)], True),
        (["wizard", "map", *a, "--item", "item-1", "--income-account", "79"], True),
        (["wizard", "map-all", *a, "--income-account", "79"], True),
        (["wizard", "map-tax", *a, "--tax-rate", "rate:8.25", "--tax-code", "TAX"], True),
        (["wizard", "map-tax-all", *a, "--tax-code", "TAX"], True),
        (["wizard", "close", *a], False),
        (["status", *a], False), (["sync-now", *a], False),
        (["replay-dead-letters", "--all"], False), (["poll-changes", *a], False),
        (["rotate-token-key"], False), (["report", *a], False),
        (["disconnect", *a], False)]
    results = _batch(env, [command for command, _ in story])
    answers: dict[str, str] = {}
    for (command, refusable), (code, out, err) in zip(story, results, strict=True):
        if refusable and code == 2:  # refused: the error first, on stderr, naming a fix
            assert err.startswith("error: "), (command, err)
            _clean(code, out, err, expected=2)
        else:
            answers[" ".join(command[:2])] = _clean(code, out, err)
    assert json.loads(answers["callback --url"])["tenant_id"] == realm
    assert "processed" in json.loads(answers["sync-now --account"])
    assert json.loads(answers["replay-dead-letters --all"])["replayed"] == 0
    assert answers["report --account"].startswith("0 events"), answers["report --account"]
    assert "connections_reencrypted" in json.loads(answers["rotate-token-key"])
    seen = {c[0] if c[0] != "wizard" else f"wizard {c[1]}"
            for c in [*(["generate-key"], ["migrate"], ["register-schemas"], ["connect"]),
                      *(command for command, _ in story)]}

    # The long-running ones: started, answering, stopped cleanly.
    # uvicorn re-raises the SIGTERM it handled after its graceful shutdown.
    port = free_port()
    code, out = _service({**env, **WEBHOOK_SECRETS}, ["serve-api", "--port", str(port)],
                         f"http://127.0.0.1:{port}/healthz")
    assert code in (0, -signal.SIGTERM) and not WARNING.search(out), out
    port = free_port()
    code, out = _service(env, ["sandbox", "--port", str(port)],
                         f"http://127.0.0.1:{port}/openapi.json")
    assert code in (0, -signal.SIGTERM) and not WARNING.search(out), out
    port = free_port()
    code, out = _service({**env, "METRICS_PORT": str(port)}, ["worker"],
                         f"http://127.0.0.1:{port}/healthz/ready")
    assert code == 0 and not WARNING.search(out), out
    seen |= {"serve-api", "sandbox", "worker"}
    demo = _run(env, "demo", "--customers", "3", timeout=300)
    assert "ended with the expected status" in _clean(demo.returncode, demo.stdout, demo.stderr)
    seen.add("demo")
    kafka = subprocess.Popen([sys.executable, "-m", "control.cli", "kafka"], cwd=REPO,
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    assert kafka.stdout is not None
    first_line = kafka.stdout.readline()
    kafka.send_signal(signal.SIGTERM)
    rest = kafka.communicate(timeout=60)[0]
    assert first_line.startswith("KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:"), first_line + rest
    assert kafka.returncode == 0 and not WARNING.search(first_line + rest), rest
    seen |= {"kafka"}
    # `local-stack`'s normal call is tests/integration/ops/test_local_stack.py (it checks
    # its terminal for warnings too).
    expected = {c[0] if c[0] != "wizard" else f"wizard {c[1]}" for c in _commands()}
    missing = expected - seen - {"local-stack"}
    assert not missing, f"commands without a normal call here: {sorted(missing)}"
