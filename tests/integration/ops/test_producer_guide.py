"""docs/producing.md's complete example, extracted from the document and run verbatim
against a worker process, ends with every record synced."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from sandbox.harness import WorkerProcess
from service.config import Topics
from tests.integration.ops.conftest import REPO, ConnectedAccount, map_income_accounts

GUIDE = REPO / "docs" / "producing.md"


def guide_example() -> str:
    text = GUIDE.read_text()
    match = re.search(r"<!-- example: publish-and-read -->\n```python\n(.*?)```", text, re.S)
    assert match, "docs/producing.md lost its marked example"
    return match.group(1)


def test_guide_example_publishes_and_reads_synced_statuses(
        kafka_bootstrap: str, sandbox_url: str, topics: Topics, tmp_path: Path,
        xero_account: ConnectedAccount) -> None:
    example = tmp_path / "producing_example.py"
    example.write_text(guide_example())
    # What the example assumes: the account connected (fixture) and its item mapped.
    map_income_accounts(xero_account, sandbox_url, ["item-drain"])
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "DATABASE_URL": xero_account.db_url,
           "TOKEN_ENCRYPTION_KEY": xero_account.key, "SANDBOX_URL": sandbox_url,
           "TOPIC_PREFIX": topics.prefix, "CONSUMER_GROUP": "guide-sync",
           "LOG_LEVEL": "warning"}
    with WorkerProcess(env, tmp_path / "worker.log") as worker:
        run = subprocess.run(
            [sys.executable, str(example)], cwd=tmp_path, capture_output=True, text=True,
            timeout=180, env={**os.environ, **env, "ACCOUNT_ID": xero_account.account,
                              "PYTHONPATH": str(REPO)})
        assert worker.terminate() == 0
    assert run.returncode == 0, run.stderr
    lines = [line.split() for line in run.stdout.splitlines()]
    assert [(w[0], w[1], w[2]) for w in lines] == [
        ("customer", "cust-1001", "synced"), ("item", "item-drain", "synced"),
        ("invoice", "inv-5001", "synced"), ("payment", "pay-9001", "synced")], run.stdout
    assert all(len(w) == 4 for w in lines), run.stdout  # each with its provider record id
    assert "Warning" not in run.stderr, run.stderr  # no deprecation notices either
