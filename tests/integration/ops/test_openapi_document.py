"""The control API's OpenAPI document: every response has a schema (so a client can be
generated), and it equals the checked-in copy, docs/openapi.json (regenerate with
`make openapi` after changing the API on purpose)."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.integration.ops.conftest import REPO

CHECKED_IN = REPO / "docs" / "openapi.json"


def openapi_document() -> dict[str, Any]:
    """The document as served at /openapi.json (no broker, a throwaway SQLite file)."""
    from control.api import create_control_app
    from service.bootstrap import build_services
    from service.config import Settings
    from state.crypto import generate_key

    with tempfile.TemporaryDirectory() as tmp:
        saved = dict(os.environ)
        os.environ.update({"BLUECLERK_MODE": "local", "TOKEN_ENCRYPTION_KEY": generate_key(),
                           "DATABASE_URL": f"sqlite:///{Path(tmp) / 'openapi.db'}"})
        try:
            services = build_services(Settings.from_env())
        finally:
            os.environ.clear()
            os.environ.update(saved)
        try:
            document: dict[str, Any] = create_control_app(services).openapi()
        finally:
            services.close()
    return json.loads(json.dumps(document))


def _render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def test_every_response_has_a_schema() -> None:
    """(The providers' webhooks are answered with empty bodies: the providers, not a
    generated client, call them.)"""
    document = openapi_document()
    missing = []
    for path, operations in document["paths"].items():
        if path.startswith("/webhooks/"):
            continue
        for method, operation in operations.items():
            for code, response in operation["responses"].items():
                content = response.get("content", {}).get("application/json", {})
                schema = content.get("schema")
                if not schema or schema == {}:
                    missing.append(f"{method.upper()} {path} {code}")
    assert not missing, missing


def test_the_document_equals_the_checked_in_copy() -> None:
    assert CHECKED_IN.read_text() == _render(openapi_document()), \
        "the control API changed: review it, then `make openapi` to update docs/openapi.json"


if __name__ == "__main__":  # `make openapi`
    CHECKED_IN.write_text(_render(openapi_document()))
    print(f"wrote {CHECKED_IN}", file=sys.stderr)
