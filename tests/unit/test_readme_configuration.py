"""Every environment variable the code reads is listed in the README's configuration, and
the documents the README links to exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("consumers", "control", "producers", "providers", "schemas", "service", "state",
            "sandbox")
_READ = re.compile(r"""(?:os\.environ\.get|os\.environ\[|getenv|_env)\(\s*(f?)["']([^"']+)["']""")


def _variables() -> set[str]:
    found: set[str] = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for is_f, name in _READ.findall(path.read_text()):
                # f"{prefix}_RATE_PER_DAY": the README lists the suffix with the prefixes
                found.add(name.split("}", 1)[1] if is_f and "}" in name else name)
    return found


def test_every_variable_read_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    configuration = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    variables = _variables()
    assert {"KAFKA_BOOTSTRAP_SERVERS", "LOG_LEVEL", "_RATE_PER_DAY"} <= variables
    # Per-provider variables are listed once with their suffix (`QBO_*`, `XERO_*`,
    # `FRESHBOOKS_*` + `_API_BASE`); a wholly templated name (`{prefix}_{part}`) is covered
    # by its literal uses.
    missing = sorted(v for v in variables if "{" not in v and v not in configuration
                     and re.sub(r"^(QBO|XERO|FRESHBOOKS)_", "_", v) not in configuration)
    assert not missing, f"not in the README's Configuration section: {missing}"


def test_linked_documents_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    for link in re.findall(r"\]\((docs/[^)]+)\)", readme):
        assert (ROOT / link).exists(), link
