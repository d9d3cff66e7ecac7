"""The config registry in Postgres: immutable versions per service and the live assignment of each service."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import yaml
from psycopg.types.json import Jsonb
from pydantic import ValidationError

from llm_optimizer.configs import ConfigSpec, ConfigVersion
from llm_optimizer.errors import ValidationFailed
from llm_optimizer.events import describe_validation_error
from llm_optimizer.resolution import Assignment

_VERSION_COLUMNS = "service, version, parent_version, spec, created_at, created_by, description"


def _version(row: tuple) -> ConfigVersion:
    service, version, parent, spec, created_at, created_by, description = row
    return ConfigVersion(
        service=service,
        version=version,
        parent_version=parent,
        spec=ConfigSpec.model_validate(spec),
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

    New versions are numbered v1, v2, ... per service unless `version` is given.
    """
    existing = conn.execute(
        f"SELECT {_VERSION_COLUMNS} FROM config_versions WHERE service = %s AND fingerprint = %s",
        (service, spec.fingerprint()),
    ).fetchone()
    if existing:
        return _version(existing)
    # Serialize numbering per service across concurrent registrations.
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"config_versions/{service}",))
    if version is None:
        count = conn.execute("SELECT count(*) FROM config_versions WHERE service = %s", (service,)).fetchone()[0]
        version = f"v{count + 1}"
    row = conn.execute(
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
    ).fetchone()
    return _version(row)


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
        "SELECT active_version, canary_version, canary_percent FROM config_assignments WHERE service = %s", (service,)
    ).fetchone()
    if row is None:
        return None
    return Assignment(service=service, active_version=row[0], canary_version=row[1], canary_percent=row[2])


def set_assignment(conn: psycopg.Connection, assignment: Assignment, *, updated_by: str) -> None:
    """Write the live assignment (idempotent: writing the same assignment twice changes nothing)."""
    conn.execute(
        "INSERT INTO config_assignments (service, active_version, canary_version, canary_percent, updated_by) "
        "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (service) DO UPDATE SET active_version = EXCLUDED.active_version, "
        "canary_version = EXCLUDED.canary_version, canary_percent = EXCLUDED.canary_percent, "
        "updated_by = EXCLUDED.updated_by, updated_at = now()",
        (
            assignment.service,
            assignment.active_version,
            assignment.canary_version,
            assignment.canary_percent,
            updated_by,
        ),
    )


def export_yaml(conn: psycopg.Connection, service: str | None = None) -> str:
    """Every version of `service` (of every service when None, one YAML document each) and its assignment, as
    YAML that `import_yaml` reads back."""
    services = (
        [service]
        if service
        else [r[0] for r in conn.execute("SELECT DISTINCT service FROM config_versions ORDER BY service")]
    )
    return yaml.safe_dump_all([_export(conn, s) for s in services], sort_keys=False)


def _export(conn: psycopg.Connection, service: str) -> dict:
    assignment = get_assignment(conn, service)
    return {
        "service": service,
        "exported_at": datetime.now(UTC).isoformat(),
        "active_version": assignment.active_version if assignment else None,
        "versions": [
            {
                "version": v.version,
                "parent_version": v.parent_version,
                "created_by": v.created_by,
                "description": v.description,
                "spec": v.spec.model_dump(mode="json"),
            }
            for v in list_versions(conn, service)
        ],
    }


def import_yaml(conn: psycopg.Connection, text: str, *, updated_by: str = "import") -> list[ConfigVersion]:
    """Register the versions of an export, one document per service (idempotent); sets a service's active version
    if it has none."""
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise ValidationFailed(f"not a config export: {exc}") from None
    if not documents:
        raise ValidationFailed("not a config export: the document is empty")
    return [version for document in documents for version in _import(conn, document, updated_by)]


def _import(conn: psycopg.Connection, document: object, updated_by: str) -> list[ConfigVersion]:
    try:
        service = document["service"]
        entries = document["versions"]
    except (TypeError, KeyError) as exc:
        raise ValidationFailed(f"not a config export: {exc}") from None
    imported = []
    for index, entry in enumerate(entries):
        try:
            spec = ConfigSpec.model_validate(entry["spec"])
        except (KeyError, TypeError) as exc:
            raise ValidationFailed(f"versions.{index}: missing spec ({exc})", field=f"versions.{index}.spec") from None
        except ValidationError as exc:
            raise ValidationFailed(describe_validation_error(exc, prefix=f"versions.{index}.spec.")) from None
        imported.append(
            register(
                conn,
                service,
                spec,
                parent_version=entry.get("parent_version"),
                created_by=entry.get("created_by", updated_by),
                description=entry.get("description", ""),
                version=entry.get("version"),
            )
        )
    active = document.get("active_version")
    if active and get_assignment(conn, service) is None:
        set_assignment(conn, Assignment(service=service, active_version=active), updated_by=updated_by)
    return imported
