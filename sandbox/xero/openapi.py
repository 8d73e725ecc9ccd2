"""Request-body validation against Xero's official OpenAPI document (v16.1.0).

The YAML (`spec/xero_accounting.yaml`, 926 KB) is parsed lazily, once per process,
and only `components/schemas` is kept. The extracted schemas are also cached as JSON
in the temp dir (keyed by the spec's SHA-256) so later processes skip the YAML parse.

What is enforced, per element of a `{"Contacts": [...]}`-style body (so that
`summarizeErrors=false` can fail single elements):

- JSON types (`string`, `number`, `integer`, `boolean`, `array`, `object`);
- `enum` values (e.g. `Invoice.Status`, `LineAmountTypes`, `CurrencyCode`);
- `maxLength` (e.g. `Contact.Name` 255, `Item.Code` 30, `Item.Name` 50);
- `required` where the spec says so (`Item.Code`, `PaymentDelete.Status`);
- `format: uuid` on identifier fields.

What is deliberately NOT enforced:

- `readOnly`: Xero silently ignores read-only fields in requests (clients often echo
  back records they fetched), so they are accepted and ignored;
- unknown properties: the spec sets no `additionalProperties: false` and Xero ignores
  unknown fields, so they are accepted;
- `$ref` siblings (OpenAPI 3.0 semantics: a `$ref` replaces its siblings);
- date formats (`x-is-msdate`): checked by the business layer, not here.
"""

from __future__ import annotations

import functools
import hashlib
import json
import tempfile
import threading
from pathlib import Path
from typing import Any

import jsonschema
import yaml

__all__ = ["SPEC_PATH", "element_errors", "schemas", "validator"]

SPEC_PATH = Path(__file__).with_name("spec") / "xero_accounting.yaml"
_REF_PREFIX = "#/components/schemas/"
_lock = threading.Lock()


def _convert(node: Any) -> Any:
    """OpenAPI 3.0 schema -> JSON Schema draft 7 (refs into `definitions`)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            if ref.startswith(_REF_PREFIX):
                return {"$ref": "#/definitions/" + ref[len(_REF_PREFIX):]}
            return {}
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in ("description", "example", "externalDocs", "default", "readOnly",
                       "xml") or key.startswith("x-"):
                continue
            if key == "properties" and isinstance(value, dict):
                out[key] = {k: _convert(v) for k, v in value.items()}
            else:
                out[key] = _convert(value)
        if out.pop("nullable", False) and "type" in out:
            out["type"] = [out["type"], "null"]
        return out
    if isinstance(node, list):
        return [_convert(v) for v in node]
    if hasattr(node, "isoformat"):  # YAML dates in enums/examples
        return node.isoformat()
    return node


def _load_uncached() -> dict[str, Any]:
    raw = SPEC_PATH.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()[:16]
    cache = Path(tempfile.gettempdir()) / f"blueclerk-xero-schemas-{digest}.json"
    try:
        cached: dict[str, Any] = json.loads(cache.read_text())
        return cached
    except (OSError, ValueError):
        pass
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    doc = yaml.load(raw, Loader=loader)
    converted: dict[str, Any] = _convert(doc["components"]["schemas"])
    try:
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps(converted))
        tmp.replace(cache)
    except OSError:
        pass
    return converted


@functools.cache
def schemas() -> dict[str, Any]:
    """All `components/schemas`, converted; parsed on first use."""
    with _lock:
        return _load_uncached()


def _is_uuid(value: object) -> bool:
    import uuid

    if not isinstance(value, str):
        return True
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


_FORMATS = jsonschema.FormatChecker(formats=())
_FORMATS.checks("uuid")(_is_uuid)


@functools.cache
def validator(name: str) -> jsonschema.Draft7Validator:
    """A validator for one element schema, e.g. `Contact`, `Item`, `PaymentDelete`."""
    defs = schemas()
    if name not in defs:
        raise KeyError(name)
    return jsonschema.Draft7Validator(
        {"$ref": f"#/definitions/{name}", "definitions": defs}, format_checker=_FORMATS
    )


def _describe(err: jsonschema.ValidationError) -> str:
    where = ".".join(str(p) for p in err.absolute_path) or "(element)"
    if err.validator == "maxLength":
        return f"{where}: value is longer than the maximum length of {err.validator_value}"
    if err.validator == "enum":
        return f"{where}: {err.instance!r} is not a valid value"
    if err.validator == "type":
        return f"{where}: expected type {err.validator_value}, got {type(err.instance).__name__}"
    if err.validator == "required":
        return f"{where}: {err.message}"
    if err.validator == "format":
        return f"{where}: {err.instance!r} is not a valid {err.validator_value}"
    return f"{where}: {err.message}"


def element_errors(schema_name: str, element: Any) -> list[str]:
    """Messages for every way `element` violates `schema_name` (empty when valid)."""
    v = validator(schema_name)
    errs = sorted(v.iter_errors(element), key=lambda e: [str(p) for p in e.absolute_path])
    return [_describe(e) for e in errs]
