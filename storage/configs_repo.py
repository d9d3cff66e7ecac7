"""The config registry in Postgres: immutable versions per service and the live assignment of each service.

Exports and imports are bounded (see "Limits and refusals" in docs/api.md): an import is read by the one safe YAML
loader (`llm_optimizer/yamlsafe.py`) and validated whole before anything is registered; an export is written a
page of versions at a time, after checking that what it would write stays under `EXPORT_MAX_BYTES`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
import yaml
from psycopg.types.json import Jsonb
from pydantic import TypeAdapter, ValidationError

from llm_optimizer import yamlsafe
from llm_optimizer.configs import (
    MAX_SPEC_BYTES,
    ConfigSpec,
    ConfigVersion,
    CreatedBy,
    Description,
    ServiceExport,
    Version,
)
from llm_optimizer.errors import ExportTooLarge, ValidationFailed, VersionConflict
from llm_optimizer.events import Name, describe_validation_error
from llm_optimizer.resolution import Assignment
from storage.db import one

_VERSION_COLUMNS = "service, version, parent_version, spec, created_at, created_by, description"
EXPORT_MAX_BYTES = 32 * 1024 * 1024  # of specs as JSON: an export over this is refused before it starts
EXPORT_PAGE = 50  # versions read, written and sent at a time
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_CHECKS: dict[str, TypeAdapter[Any]] = {
    "service": TypeAdapter(Name),
    "version": TypeAdapter(Version),
    "parent_version": TypeAdapter(Version | None),
    "created_by": TypeAdapter(CreatedBy),
    "description": TypeAdapter(Description),
}


def _version(row: tuple) -> ConfigVersion:
    service, version, parent, spec, created_at, created_by, description = row
    return ConfigVersion(
        service=service,
        version=version,
        parent_version=parent,
        spec=ConfigSpec.model_validate(spec, context={"stored": True}),
        created_at=created_at,
        created_by=created_by,
        description=description,
    )


def register(
    conn: psycopg.Connection,
    service: str,
    spec: ConfigSpec,
    *,
    parent_version: str | None = None,
    created_by: str = "optimizer",
    description: str = "",
    version: str | None = None,
) -> ConfigVersion:
    """Register `spec` for `service`; the same content registered again returns the existing version.

    New versions are numbered v1, v2, ... per service unless `version` is given. Refused with `ValidationFailed`
    naming the field and the value: an invalid name or text, a `parent_version` the service does not have; with
    `VersionConflict`: a `version` the service already has with another spec.
    """
    _check(
        service=service,
        version=version or "v1",
        parent_version=parent_version,
        created_by=created_by,
        description=description,
    )
    existing = conn.execute(
        f"SELECT {_VERSION_COLUMNS} FROM config_versions WHERE service = %s AND fingerprint = %s",
        (service, spec.fingerprint()),
    ).fetchone()
    if existing:
        return _version(existing)
    # Serialize numbering per service across concurrent registrations.
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"config_versions/{service}",))
    names = {r[0] for r in conn.execute("SELECT version FROM config_versions WHERE service = %s", (service,))}
    if parent_version is not None and parent_version not in names:
        raise ValidationFailed(
            f"parent_version = {parent_version!r}: service {service!r} has no such version",
            field="parent_version",
            value=parent_version,
        )
    if version is None:
        number = len(names) + 1
        while f"v{number}" in names:  # an import may have taken the next number's name
            number += 1
        version = f"v{number}"
    elif version in names:
        raise VersionConflict(
            f"version = {version!r}: service {service!r} already has a version {version!r} with another spec "
            "(versions are immutable: give this one another name, or none to have it numbered)",
            field="version",
            value=version,
        )
    cursor = conn.execute(
        f"INSERT INTO config_versions (service, version, parent_version, spec, fingerprint, created_by, description) "
        f"VALUES (%s, %s, %s, %s, %s, %s, %s) "
        f"ON CONFLICT (service, fingerprint) DO UPDATE SET fingerprint = EXCLUDED.fingerprint "
        f"RETURNING {_VERSION_COLUMNS}",
        (
            service,
            version,
            parent_version,
            Jsonb(spec.model_dump(mode="json")),
            spec.fingerprint(),
            created_by,
            description,
        ),
    )
    return _version(one(cursor))


def get_version(conn: psycopg.Connection, service: str, version: str) -> ConfigVersion:
    row = conn.execute(
        f"SELECT {_VERSION_COLUMNS} FROM config_versions WHERE service = %s AND version = %s", (service, version)
    ).fetchone()
    if row is None:
        raise ValidationFailed(f"config version {version!r} of service {service!r} does not exist", field="version")
    return _version(row)


def list_versions(conn: psycopg.Connection, service: str) -> list[ConfigVersion]:
    rows = conn.execute(
        f"SELECT {_VERSION_COLUMNS} FROM config_versions WHERE service = %s ORDER BY created_at, version", (service,)
    ).fetchall()
    return [_version(r) for r in rows]


def get_assignment(conn: psycopg.Connection, service: str) -> Assignment | None:
    row = conn.execute(
        "SELECT active_version, canary_version, canary_percent, explore FROM config_assignments WHERE service = %s",
        (service,),
    ).fetchone()
    if row is None:
        return None
    return Assignment(
        service=service, active_version=row[0], canary_version=row[1], canary_percent=row[2], explore=row[3]
    )


def set_assignment(conn: psycopg.Connection, assignment: Assignment, *, updated_by: str) -> None:
    """Write the live assignment (idempotent: writing the same assignment twice changes nothing)."""
    conn.execute(
        "INSERT INTO config_assignments (service, active_version, canary_version, canary_percent, explore, "
        "updated_by) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (service) DO UPDATE SET "
        "active_version = EXCLUDED.active_version, canary_version = EXCLUDED.canary_version, "
        "canary_percent = EXCLUDED.canary_percent, explore = EXCLUDED.explore, "
        "updated_by = EXCLUDED.updated_by, updated_at = now()",
        (
            assignment.service,
            assignment.active_version,
            assignment.canary_version,
            assignment.canary_percent,
            Jsonb(assignment.explore),
            updated_by,
        ),
    )


def export_plan(conn: psycopg.Connection, service: str | None = None) -> list[tuple[str, int]]:
    """(service, number of versions) for each service an export of `service` (of every service when None) writes,
    or `ExportTooLarge` if a stored spec is over `MAX_SPEC_BYTES` or all of them over `EXPORT_MAX_BYTES`."""
    where, params = ("WHERE service = %s", (service,)) if service else ("", ())
    rows = conn.execute(
        f"SELECT service, count(*), sum(octet_length(spec::text)), max(octet_length(spec::text)) "
        f"FROM config_versions {where} GROUP BY service ORDER BY service",
        params,
    ).fetchall()
    if rows and (largest := max(rows, key=lambda r: r[3]))[3] > MAX_SPEC_BYTES:
        version = one(
            conn.execute(
                "SELECT version FROM config_versions WHERE service = %s ORDER BY octet_length(spec::text) DESC LIMIT 1",
                (largest[0],),
            )
        )[0]
        raise ExportTooLarge(
            f"service {largest[0]!r} version {version!r} has a spec of {largest[3]} bytes, more than the "
            f"{MAX_SPEC_BYTES} a spec may hold (it was stored before the limit): the export is refused; "
            "export the other services one at a time (?service=...)"
        )
    total = sum(r[2] for r in rows)
    if total > EXPORT_MAX_BYTES:
        raise ExportTooLarge(
            f"the export would hold {total} bytes of specs, more than the bound of {EXPORT_MAX_BYTES}: "
            "export one service at a time (?service=...)"
        )
    return [(r[0], r[1]) for r in rows] or ([(service, 0)] if service else [])


def export_start(conn: psycopg.Connection, service: str, versions: int) -> str:
    """The head of a service's export document: everything but its versions, which `export_page` writes."""
    assignment = get_assignment(conn, service)
    head = {
        "service": service,
        "exported_at": datetime.now(UTC).isoformat(),
        "active_version": assignment.active_version if assignment else None,
    }
    text = yaml.dump(head, Dumper=_Dumper, sort_keys=False)
    return text + ("versions:\n" if versions else "versions: []\n")


def export_page(
    conn: psycopg.Connection, service: str, after: tuple[datetime, str] | None = None
) -> tuple[str, tuple[datetime, str] | None]:
    """The next `EXPORT_PAGE` versions of `service` (oldest first) as YAML list items, and where the page after
    starts (None after the last)."""
    where, params = ("AND (created_at, version) > (%s, %s)", after) if after else ("", ())
    rows = conn.execute(
        f"SELECT {_VERSION_COLUMNS} FROM config_versions WHERE service = %s {where} "
        f"ORDER BY created_at, version LIMIT %s",
        (service, *params, EXPORT_PAGE),
    ).fetchall()
    entries = [_entry(_version(row)) for row in rows]
    text = yaml.dump(entries, Dumper=_Dumper, sort_keys=False) if entries else ""
    return text, ((rows[-1][4], rows[-1][1]) if len(rows) == EXPORT_PAGE else None)


def _entry(v: ConfigVersion) -> dict[str, Any]:
    return {
        "version": v.version,
        "parent_version": v.parent_version,
        "created_by": v.created_by,
        "description": v.description,
        "spec": v.spec.model_dump(mode="json"),
    }


def import_yaml(conn: psycopg.Connection, text: str, *, updated_by: str = "import") -> list[ConfigVersion]:
    """Register the versions of an export, one document per service (idempotent); sets a service's active version
    if it has none. Every document is validated before anything is registered, and the caller's transaction makes
    the import all or nothing."""
    documents = [d for d in yamlsafe.safe_load_all(text, what="config import") if d is not None]
    if not documents:
        raise ValidationFailed("not a config export: the document is empty")
    exports = []
    for index, document in enumerate(documents):
        where = f"document {index + 1}: " if len(documents) > 1 else ""
        if not isinstance(document, dict):
            raise ValidationFailed(
                f"{where}not a config export: expected a mapping with `service` and `versions`, got "
                f"{type(document).__name__}"
            )
        try:
            exports.append(ServiceExport.model_validate(document))
        except ValidationError as exc:
            raise ValidationFailed(where + describe_validation_error(exc)) from None
    return [version for export in exports for version in _import(conn, export, updated_by)]


def _import(conn: psycopg.Connection, export: ServiceExport, updated_by: str) -> list[ConfigVersion]:
    """Register `export`'s versions, each after its parent when the parent is in the same document."""
    service = export.service
    pending = list(enumerate(export.versions))
    in_document = {entry.version for entry in export.versions if entry.version}
    done: set[str] = set()
    imported: dict[int, ConfigVersion] = {}
    while pending:
        ready = [(i, e) for i, e in pending if e.parent_version not in in_document - done]
        waiting = [(i, e) for i, e in pending if e.parent_version in in_document - done]
        if not ready:
            index, entry = waiting[0]
            raise ValidationFailed(
                f"service {service!r}: versions.{index}.parent_version = {entry.parent_version!r}: the versions of "
                "this document are each other's parents (a cycle)",
                field=f"versions.{index}.parent_version",
                value=entry.parent_version,
            )
        for index, entry in ready:
            try:
                imported[index] = register(
                    conn,
                    service,
                    entry.spec,
                    parent_version=entry.parent_version,
                    created_by=entry.created_by or updated_by,
                    description=entry.description,
                    version=entry.version,
                )
            except ValidationFailed as exc:
                raise type(exc)(
                    f"service {service!r}: versions.{index}.{exc}",
                    field=f"versions.{index}.{exc.field}" if exc.field else None,
                    value=exc.value,
                ) from None
            if entry.version:
                done.add(entry.version)
        pending = waiting
    active = export.active_version
    if active and get_assignment(conn, service) is None:
        if not has_version(conn, service, active):
            raise ValidationFailed(
                f"service {service!r}: active_version = {active!r}: no such version, neither stored nor imported",
                field="active_version",
                value=active,
            )
        set_assignment(conn, Assignment(service=service, active_version=active), updated_by=updated_by)
    return [imported[index] for index in sorted(imported)]


def has_version(conn: psycopg.Connection, service: str, version: str) -> bool:
    """Is `version` registered for `service`?"""
    row = conn.execute("SELECT 1 FROM config_versions WHERE service = %s AND version = %s", (service, version))
    return row.fetchone() is not None


def _check(**values: Any) -> None:
    """`ValidationFailed` naming the field and the value for the first of `values` that is not valid."""
    for field, value in values.items():
        try:
            _CHECKS[field].validate_python(value)
        except ValidationError as exc:
            message = exc.errors(include_url=False)[0]["msg"]
            shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
            raise ValidationFailed(f"{field} = {shown}: {message}", field=field, value=value) from None
