"""A small Confluent-compatible Schema Registry for tests and the local stack (in memory).

It answers the REST calls confluent-kafka's `SchemaRegistryClient` makes for Avro:
register (`POST /subjects/{s}/versions`, the same schema twice gets the same id), look up
(`POST /subjects/{s}`), read by id (`GET /schemas/ids/{id}`), list subjects and versions,
and compatibility (`GET/PUT /config[/{s}]`, `POST /compatibility/subjects/{s}/versions/
latest`). Compatibility is checked the way the registry does for BACKWARD (the new schema
reads data written with the latest one), FORWARD, FULL and NONE, structurally: a field
the reader has and the writer lacks needs a default, and a field both have must resolve
(same type, a union holding it, or an Avro promotion). Errors use the registry's
`{"error_code", "message"}` bodies (40401 subject not found, 40403 schema not found,
409 incompatible, 42201 invalid schema).
"""

from __future__ import annotations

import json
import threading
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastavro.schema import parse_schema, to_parsing_canonical_form

__all__ = ["backward_compatible", "create_schema_registry"]

_PROMOTIONS = {"int": {"long", "float", "double"}, "long": {"float", "double"},
               "float": {"double"}, "string": {"bytes"}, "bytes": {"string"}}
_LEVELS = ("NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE",
           "FULL", "FULL_TRANSITIVE")
_CONTENT = "application/vnd.schemaregistry.v1+json"


def _type_name(schema: Any) -> str:
    if isinstance(schema, str):
        return schema.rsplit(".", 1)[-1]
    if isinstance(schema, list):
        return "union"
    kind = schema.get("type")
    if kind in ("record", "enum", "fixed"):
        return str(schema["name"]).rsplit(".", 1)[-1]
    return _type_name(kind)


def _resolves(writer: Any, reader: Any, problems: list[str], where: str) -> None:
    """Can data written with `writer` be read with `reader`? Adds what cannot to problems."""
    if isinstance(writer, list):
        for branch in writer:
            _resolves(branch, reader, problems, where)
        return
    if isinstance(reader, list):
        for branch in reader:
            trial: list[str] = []
            _resolves(writer, branch, trial, where)
            if not trial:
                return
        problems.append(f"{where}: no branch of the reader's union reads {_type_name(writer)}")
        return
    w, r = _type_name(writer), _type_name(reader)
    if isinstance(writer, dict) and writer.get("type") in ("array", "map"):
        if not isinstance(reader, dict) or reader.get("type") != writer["type"]:
            problems.append(f"{where}: {writer['type']} became {r}")
            return
        key = "items" if writer["type"] == "array" else "values"
        _resolves(writer[key], reader[key], problems, f"{where}[]")
        return
    if isinstance(writer, dict) and writer.get("type") == "record":
        if not isinstance(reader, dict) or reader.get("type") != "record" or w != r:
            problems.append(f"{where}: record {w} became {r}")
            return
        written = {f["name"]: f for f in writer["fields"]}
        for field in reader["fields"]:
            path = f"{where}.{field['name']}" if where else field["name"]
            if field["name"] in written:
                _resolves(written[field["name"]]["type"], field["type"], problems, path)
            elif "default" not in field:
                problems.append(f"{path}: new field without a default")
        return
    if isinstance(writer, dict) and writer.get("type") == "enum":
        if not isinstance(reader, dict) or reader.get("type") != "enum":
            problems.append(f"{where}: enum {w} became {r}")
            return
        missing = set(writer["symbols"]) - set(reader["symbols"])
        if missing and "default" not in reader:
            problems.append(f"{where}: symbols {sorted(missing)} removed without a default")
        return
    if w != r and r not in _PROMOTIONS.get(w, set()):
        problems.append(f"{where}: {w} cannot be read as {r}")


def backward_compatible(new: Any, old: Any) -> list[str]:
    """Why `new` cannot read data written with `old` (empty: it can)."""
    problems: list[str] = []
    _resolves(old, new, problems, "")
    return problems


def _error(status: int, code: int, message: str) -> JSONResponse:
    return JSONResponse({"error_code": code, "message": message}, status_code=status,
                        media_type=_CONTENT)


def create_schema_registry() -> FastAPI:
    """The registry app; its state lives in memory for the app's lifetime."""
    app = FastAPI(title="schema registry (test double)", openapi_url=None)
    lock = threading.Lock()
    by_id: dict[int, str] = {}
    ids_by_canonical: dict[str, int] = {}
    subjects: dict[str, list[int]] = {}
    config: dict[str, str] = {}
    global_level = ["BACKWARD"]

    def level(subject: str) -> str:
        return config.get(subject, global_level[0])

    def check(subject: str, schema: Any) -> list[str]:
        versions = subjects.get(subject) or []
        mode = level(subject)
        if mode == "NONE" or not versions:
            return []
        others = versions if mode.endswith("TRANSITIVE") else versions[-1:]
        problems: list[str] = []
        for schema_id in others:
            old = json.loads(by_id[schema_id])
            if mode.startswith(("BACKWARD", "FULL")):
                problems += backward_compatible(schema, old)
            if mode.startswith(("FORWARD", "FULL")):
                problems += backward_compatible(old, schema)
        return problems

    async def body_schema(request: Request) -> tuple[Any, str] | JSONResponse:
        try:
            body = await request.json()
            if body.get("schemaType", "AVRO") != "AVRO":
                return _error(422, 42201, "only AVRO schemas are supported here")
            schema = json.loads(body["schema"])
            canonical = to_parsing_canonical_form(parse_schema(schema))
        except Exception as exc:
            return _error(422, 42201, f"Invalid schema: {exc}")
        return schema, canonical

    @app.post("/subjects/{subject}/versions")
    async def register(subject: str, request: Request) -> JSONResponse:
        parsed = await body_schema(request)
        if isinstance(parsed, JSONResponse):
            return parsed
        schema, canonical = parsed
        with lock:
            known = ids_by_canonical.get(canonical)
            versions = subjects.setdefault(subject, [])
            if known is not None and known in versions:
                return JSONResponse({"id": known}, media_type=_CONTENT)
            problems = check(subject, schema)
            if problems:
                return _error(409, 409, "Schema being registered is incompatible with an "
                              f"earlier schema for subject {subject!r} ({level(subject)}): "
                              + "; ".join(problems))
            if known is None:
                known = len(by_id) + 1
                by_id[known] = json.dumps(schema)
                ids_by_canonical[canonical] = known
            versions.append(known)
            return JSONResponse({"id": known}, media_type=_CONTENT)

    @app.post("/subjects/{subject}")
    async def lookup(subject: str, request: Request) -> JSONResponse:
        parsed = await body_schema(request)
        if isinstance(parsed, JSONResponse):
            return parsed
        _schema, canonical = parsed
        with lock:
            versions = subjects.get(subject)
            if not versions:
                return _error(404, 40401, f"Subject {subject!r} not found.")
            schema_id = ids_by_canonical.get(canonical)
            if schema_id not in versions:
                return _error(404, 40403, "Schema not found")
            return JSONResponse({"subject": subject, "id": schema_id,
                                 "version": versions.index(schema_id) + 1,
                                 "schema": by_id[schema_id]}, media_type=_CONTENT)

    @app.get("/schemas/ids/{schema_id}")
    def by_schema_id(schema_id: int) -> JSONResponse:
        text = by_id.get(schema_id)
        if text is None:
            return _error(404, 40403, f"Schema {schema_id} not found")
        return JSONResponse({"schema": text}, media_type=_CONTENT)

    @app.get("/subjects")
    def list_subjects() -> JSONResponse:
        return JSONResponse(sorted(s for s, v in subjects.items() if v), media_type=_CONTENT)

    @app.get("/subjects/{subject}/versions")
    def list_versions(subject: str) -> JSONResponse:
        versions = subjects.get(subject)
        if not versions:
            return _error(404, 40401, f"Subject {subject!r} not found.")
        return JSONResponse(list(range(1, len(versions) + 1)), media_type=_CONTENT)

    @app.get("/subjects/{subject}/versions/{version}")
    def get_version(subject: str, version: str) -> JSONResponse:
        versions = subjects.get(subject)
        if not versions:
            return _error(404, 40401, f"Subject {subject!r} not found.")
        index = len(versions) if version == "latest" else int(version)
        if not 1 <= index <= len(versions):
            return _error(404, 40402, f"Version {version} not found.")
        schema_id = versions[index - 1]
        return JSONResponse({"subject": subject, "version": index, "id": schema_id,
                             "schemaType": "AVRO", "schema": by_id[schema_id]},
                            media_type=_CONTENT)

    @app.get("/config")
    def get_global() -> JSONResponse:
        return JSONResponse({"compatibilityLevel": global_level[0]}, media_type=_CONTENT)

    @app.get("/config/{subject}")
    def get_config(subject: str) -> JSONResponse:
        if subject not in config:
            return _error(404, 40408, f"Subject {subject!r} does not have subject-level "
                          "compatibility configured")
        return JSONResponse({"compatibilityLevel": config[subject]}, media_type=_CONTENT)

    async def _level(request: Request) -> str | JSONResponse:
        body = await request.json()
        wanted = str(body.get("compatibility", "")).upper()
        if wanted not in _LEVELS:
            return _error(422, 42203, f"Invalid compatibility level {wanted!r}")
        return wanted

    @app.put("/config")
    async def put_global(request: Request) -> JSONResponse:
        wanted = await _level(request)
        if isinstance(wanted, JSONResponse):
            return wanted
        global_level[0] = wanted
        return JSONResponse({"compatibility": wanted}, media_type=_CONTENT)

    @app.put("/config/{subject}")
    async def put_config(subject: str, request: Request) -> JSONResponse:
        wanted = await _level(request)
        if isinstance(wanted, JSONResponse):
            return wanted
        config[subject] = wanted
        return JSONResponse({"compatibility": wanted}, media_type=_CONTENT)

    @app.post("/compatibility/subjects/{subject}/versions/{version}")
    async def compatible(subject: str, version: str, request: Request) -> JSONResponse:
        parsed = await body_schema(request)
        if isinstance(parsed, JSONResponse):
            return parsed
        problems = check(subject, parsed[0])
        return JSONResponse({"is_compatible": not problems, "messages": problems},
                            media_type=_CONTENT)

    return app
