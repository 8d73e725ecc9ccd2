"""`blueclerk-sync local-stack` brings everything up, prints where it is, carries a
connection and an event through, and stops everything on Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx

from control.oauth_flow import sandbox_consent
from producers.upstream import ChangeEventBuilder, ChangeEventPublisher, wait_for_statuses
from sandbox.control_client import new_tenant
from sandbox.serve import free_port
from tests.integration.ops.conftest import REPO


def _ready(url: str, within_s: float = 60.0) -> bool:
    """The worker's readiness, asked until it says ready (a loaded machine may take a few
    seconds for the worker's first assignment and the probe's broker check)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=15).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return False


def _read_until(process: subprocess.Popen[str], marker: str, lines: list[str],
                timeout: float) -> None:
    """Collect stdout lines (on a thread) until one contains `marker`."""
    found = threading.Event()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if marker in line:
                found.set()
        found.set()

    threading.Thread(target=pump, daemon=True).start()
    assert found.wait(timeout), "".join(lines)


def test_local_stack_connect_event_and_stop(kafka_bootstrap: str, tmp_path: Path) -> None:
    api_port, sandbox_port, metrics_port = free_port(), free_port(), free_port()
    prefix = f"ls{uuid.uuid4().hex[:8]}."
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "BLUECLERK_MODE": "local",
           "XDG_STATE_HOME": str(tmp_path / "xdg")}
    env.pop("DATABASE_URL", None)
    env.pop("LOG_LEVEL", None)
    stack = subprocess.Popen(
        [sys.executable, "-m", "control.cli", "local-stack", "--api-port", str(api_port),
         "--sandbox-port", str(sandbox_port), "--metrics-port", str(metrics_port),
         "--topic-prefix", prefix, "--startup-timeout", "90"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    try:
        _read_until(stack, "blueclerk-sync report", lines, timeout=150)
        out = "".join(lines)
        api = re.search(r"control API\s+(http://\S+)", out)
        assert api and api.group(1) == f"http://127.0.0.1:{api_port}", out
        assert f"http://127.0.0.1:{sandbox_port}" in out and kafka_bootstrap in out
        assert f"http://127.0.0.1:{metrics_port}/healthz/ready" in out
        state = tmp_path / "xdg" / "blueclerk-sync" / "local-stack"
        assert (state / "stack.env").exists() and (state / "sync.db").exists()  # outside the tree
        assert _ready(f"http://127.0.0.1:{metrics_port}/healthz/ready")

        # Connect through the control API the way the web app does.
        account, realm = f"acct-{uuid.uuid4().hex[:6]}", new_tenant("quickbooks")
        headers = {"Authorization": "Bearer local-control-token"}
        start = httpx.post(f"{api.group(1)}/v1/accounts/{account}/connection",
                           json={"provider": "quickbooks"}, headers=headers, timeout=30)
        assert start.status_code == 200, start.text
        redirect = sandbox_consent(start.json()["authorization_url"], tenant=realm)
        done = httpx.get(f"{api.group(1)}/oauth/callback", params=redirect, timeout=30,
                         headers={"X-BlueClerk-OAuth-Binding": start.json()["binding"]})
        assert done.status_code == 200, done.text

        # An event through the stack's worker.
        customer = ChangeEventBuilder(account).customer("cust-1", "Local Stack Plumbing")
        with ChangeEventPublisher(kafka_bootstrap, topic_prefix=prefix) as publisher:
            publisher.publish([customer])
        statuses = wait_for_statuses(kafka_bootstrap, [customer], topic_prefix=prefix,
                                     timeout=90)
        assert statuses[customer.event_id].status.value == "synced", statuses
        status = httpx.get(f"{api.group(1)}/v1/accounts/{account}/status", headers=headers,
                           timeout=30)
        assert status.status_code == 200 and account in status.text, status.text
    finally:
        stack.send_signal(signal.SIGINT)
        try:
            code = stack.wait(timeout=90)
        except subprocess.TimeoutExpired:
            stack.kill()
            raise
    assert code == 0, "".join(lines)
    time.sleep(0.2)
    assert "stopped" in "".join(lines)
    stderr = stack.stderr.read() if stack.stderr else ""
    assert "Warning" not in stderr and "UNKNOWN_TOPIC" not in stderr, stderr
    for port in (api_port, sandbox_port, metrics_port):  # everything it started is gone
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
        except httpx.TransportError:
            continue
        raise AssertionError(f"port {port} still answers after the stack stopped")
