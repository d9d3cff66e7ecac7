"""Hostile and careless input over HTTP, and the YAML the product reads: a clear 4xx naming the problem, never a
500, nothing stored that should not be (issue 19, items 5 and 7; docs/api.md, "Limits and refusals")."""

from __future__ import annotations

import logging
import re
import time
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest
import yaml
from helpers.api_server import running_api
from helpers.servers import settings_for
from psycopg.types.json import Jsonb

from llm_optimizer import yamlsafe
from llm_optimizer.configs import MAX_EXTRA_BYTES, MAX_SPEC_BYTES, ConfigSpec
from llm_optimizer.errors import SettingsError, UnsafeYaml, ValidationFailed
from llm_optimizer.redaction import REDACTED, redact
from llm_optimizer.rules import load_rules
from llm_optimizer.settings import CONFIG_FILE_ENV, load_settings
from runtime.logs import RedactingFilter
from simulator.samples import sample_events
from storage import configs_repo

LOL = ", ".join(['"lol"'] * 9)
# The probe's import: 9 levels of 9 aliases, a billion strings from a few hundred bytes.
LEVELS = "".join(
    f"      {name}: &{name} [{', '.join([f'*{prev}'] * 9)}]\n"
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
)
BOMB = f"service: bomb\nversions:\n- spec:\n    model: m\n    provider: p\n    extra:\n      a: &a [{LOL}]\n{LEVELS}"


@pytest.fixture
def api(stack, database_url):
    settings = settings_for(stack, database_url, server={"max_body_bytes": 2_000_000})
    with running_api(settings) as running:
        yield running


def _export(service: str, versions: list[dict], active: str | None = None) -> str:
    return yaml.safe_dump({"service": service, "active_version": active, "versions": versions}, sort_keys=False)


def _spec(model: str = "gpt-4o", **extra) -> dict:
    return {"model": model, "provider": "openai", **extra}


# ---- the one YAML loader -----------------------------------------------------------------------------------------


def test_the_bomb_is_refused_before_anything_is_built():
    assert len(BOMB.encode()) < 700
    started = time.perf_counter()
    with pytest.raises(UnsafeYaml, match=r"config import: aliases expand .* refused as an alias bomb"):
        yamlsafe.safe_load(BOMB, what="config import")
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("a: &a [1, *a]", r"an alias refers to a value that contains it \(a cycle\)"),
        ("x: " + "[" * 101 + "]" * 101, r"values nest 10[12] levels deep, more than the limit of 100"),
        ("x: 1" + "0" * 5000, r"a value cannot be read \(Exceeds the limit \(4300 digits\)"),
        ("when: 2020-13-45", r"a value cannot be read \(month must be in 1\.\.12\)"),
        ("a: [1, 2", r"not valid YAML"),
    ],
)
def test_refusals_name_the_problem(text, problem):
    with pytest.raises(UnsafeYaml, match=problem) as refused:
        yamlsafe.safe_load(text, what="rules")
    assert str(refused.value).startswith("rules: ")
    assert isinstance(refused.value, yaml.YAMLError) and isinstance(refused.value, ValidationFailed)


def test_ordinary_anchors_and_merges_still_load():
    text = "base: &base {model: gpt-4o, temperature: 0.2}\nchat:\n  <<: *base\n  temperature: 0.5\nother: *base\n"
    assert yamlsafe.safe_load(text) == {
        "base": {"model": "gpt-4o", "temperature": 0.2},
        "chat": {"model": "gpt-4o", "temperature": 0.5},
        "other": {"model": "gpt-4o", "temperature": 0.2},
    }
    assert list(yamlsafe.safe_load_all("a: 1\n---\nb: 2\n")) == [{"a": 1}, {"b": 2}]
    with pytest.raises(UnsafeYaml, match="expected one YAML document, found 2"):
        yamlsafe.safe_load("a: 1\n---\nb: 2\n")


def test_every_yaml_the_product_reads_goes_through_the_safe_loader(repo_root):
    """No product module calls PyYAML's loaders itself: a new one would bypass the limits."""
    loader_call = re.compile(r"yaml\.(safe_load|safe_load_all|load|load_all|full_load|unsafe_load)\(|Loader\b")
    offenders = []
    for folder in ("llm_optimizer", "api", "storage", "starter", "activities", "workflows", "integrations"):
        for path in sorted((repo_root / folder).rglob("*.py")):
            if path.name == "yamlsafe.py":
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if loader_call.search(line):
                    offenders.append(f"{path.relative_to(repo_root)}:{number}: {line.strip()}")
    assert offenders == []


def test_rules_and_settings_files_refuse_the_bomb(tmp_path, monkeypatch):
    with pytest.raises(ValidationFailed, match=r"^rules: aliases expand"):
        load_rules(BOMB)
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text(BOMB)
    monkeypatch.setenv(CONFIG_FILE_ENV, str(settings_file))
    with pytest.raises(SettingsError, match=r"OPTIMIZER_CONFIG_FILE=.*settings file: aliases expand"):
        load_settings()


# ---- the spec: what Postgres can store, bounded ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        (_spec(extra={"a": {"b": "x\x00y"}}), r"extra\.a\.b = 'x\\x00y': contains a NUL character"),
        (_spec(extra={"t": float("inf")}), r"extra\.t = inf: not a finite number"),
        (_spec(extra={"k": {1: "v"}}), r"extra\.k: key 1 is not a string"),
        (_spec(extra={"blob": "x" * MAX_EXTRA_BYTES}), rf"extra is \d+ bytes as JSON, more than the limit of {65536}"),
        (_spec(prompt_template="hi\x00"), r"prompt_template\n  Value error, contains a NUL character"),
    ],
)
def test_a_spec_refuses_what_postgres_cannot_store(spec, problem):
    with pytest.raises(ValueError, match=problem):
        ConfigSpec.model_validate(spec)


def test_the_largest_allowed_spec_fits_the_stored_spec_limit(db):
    spec = ConfigSpec.model_validate(
        # 4-byte characters, and the `extra` that Postgres prints largest (", " after each of 32,000 zeros)
        _spec(prompt_template="\U0001f600" * 100_000, extra={"n": [0] * 32_000})
    )
    version = configs_repo.register(db, "big", spec)
    size = db.execute("SELECT octet_length(spec::text) FROM config_versions WHERE service = 'big'").fetchone()[0]
    assert version.version == "v1" and size <= MAX_SPEC_BYTES


# ---- import ------------------------------------------------------------------------------------------------------


async def test_hostile_imports_are_4xx_naming_the_problem_and_store_nothing(api, database_url):
    admin = api.auth("admin")
    long_description = "d" * 2001
    cases = [
        (BOMB, 422, "aliases expand the document"),
        (_export("../etc", [{"spec": _spec()}]), 422, "service = '../etc'"),
        (_export("x" * 200, [{"spec": _spec()}]), 422, "service = 'xxxx"),
        (_export("ok", [{"version": "v 1", "spec": _spec()}]), 422, "versions.0.version = 'v 1'"),
        (_export("ok", [{"description": long_description, "spec": _spec()}]), 422, "versions.0.description"),
        (_export("ok", [{"spec": _spec(extra={"a": "\x00"})}]), 422, "versions.0.spec.extra"),
        (_export("ok", [{"spec": _spec(), "bogus": 1}]), 422, "versions.0.bogus"),
        (_export("ok", [{"spec": _spec(), "parent_version": "v9"}]), 422, "parent_version = 'v9'"),
        (_export("ok", [{"version": "v1", "spec": _spec()}], active="v7"), 422, "active_version = 'v7'"),
        (
            "service: ok\nversions: [{spec: {model: m, provider: p}}]\nexported_at: 2026-02-30\n",
            422,
            "a value cannot be read",
        ),
        ("- just\n- a list\n", 422, "not a config export: expected a mapping"),
        (b"service: \xff\xfe\n", 422, "not UTF-8 text (byte 9"),
    ]
    async with httpx.AsyncClient(base_url=api.url, headers=admin, timeout=30) as http:
        for body, status, detail in cases:
            started = time.perf_counter()
            answer = await http.post("/api/v1/config/import", content=body)
            assert answer.status_code == status, (body[:80], answer.text)
            assert detail in answer.json()["detail"], (detail, answer.json())
            assert time.perf_counter() - started < 5
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM config_versions").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM config_assignments").fetchone() == (0,)


async def test_an_existing_version_with_another_spec_is_409_and_the_import_is_all_or_nothing(api, database_url):
    admin = api.auth("admin")
    first = _export("chat", [{"version": "v1", "spec": _spec()}], active="v1")
    clash = _export("chat", [{"version": "v2", "spec": _spec("gpt-4o-mini")}, {"version": "v1", "spec": _spec("o3")}])
    async with httpx.AsyncClient(base_url=api.url, headers=admin) as http:
        assert (await http.post("/api/v1/config/import", content=first)).json() == {"imported": ["v1"]}
        refused = await http.post("/api/v1/config/import", content=clash)
        assert refused.status_code == 409
        assert "versions.1.version = 'v1': service 'chat' already has a version 'v1'" in refused.json()["detail"]
        # The same content again is not a conflict: it is the version already there (idempotent).
        assert (await http.post("/api/v1/config/import", content=first)).json() == {"imported": ["v1"]}
        # Numbering goes past a name an import took.
        taken = _export("chat", [{"version": "v3", "spec": _spec("gpt-4o-mini")}])
        assert (await http.post("/api/v1/config/import", content=taken)).status_code == 200
    with psycopg.connect(database_url) as conn:
        versions = conn.execute("SELECT version, spec->>'model' FROM config_versions ORDER BY version").fetchall()
        assert versions == [("v1", "gpt-4o"), ("v3", "gpt-4o-mini")]  # nothing of the refused import landed
        assert configs_repo.register(conn, "chat", ConfigSpec(model="o3", provider="openai")).version == "v4"


async def test_an_export_reads_back_whatever_the_order_of_its_versions(api, database_url):
    # Twelve versions registered in one transaction share created_at, so the export lists v10 before v2: an import
    # registers each version after its parent anyway.
    with psycopg.connect(database_url) as conn:
        parent = None
        for i in range(1, 13):
            parent = configs_repo.register(
                conn, "chain", ConfigSpec(model=f"m-{i}", provider="p"), parent_version=parent
            ).version
    async with httpx.AsyncClient(base_url=api.url, headers=api.auth("admin")) as http:
        exported = (await http.get("/api/v1/config/export", params={"service": "chain"})).text
        listed = [v["version"] for v in yaml.safe_load(exported)["versions"]]
        assert listed.index("v10") < listed.index("v9")
        copy = exported.replace("service: chain", "service: chain-copy")
        imported = await http.post("/api/v1/config/import", content=copy)
    assert imported.status_code == 200, imported.text
    assert imported.json() == {"imported": listed}


# ---- export ------------------------------------------------------------------------------------------------------


async def test_export_streams_page_by_page_and_says_where_it_ends(api, database_url):
    with psycopg.connect(database_url) as conn:
        for service in ("alpha", "beta"):
            for i in range(configs_repo.EXPORT_PAGE * 2 + 3):
                configs_repo.register(conn, service, ConfigSpec(model=f"m-{i}", provider="p"))
        configs_repo.register(conn, "gamma", ConfigSpec(model="only", provider="p"))
    async with (
        httpx.AsyncClient(base_url=api.url, headers=api.auth("viewer")) as http,
        http.stream("GET", "/api/v1/config/export") as answer,
    ):
        assert answer.status_code == 200
        assert "content-length" not in answer.headers  # streamed, not built whole
        chunks = [chunk async for chunk in answer.aiter_text()]
    text = "".join(chunks)
    assert text.endswith("# end of export: 3 services\n")
    documents = list(yaml.safe_load_all(text))
    assert [d["service"] for d in documents] == ["alpha", "beta", "gamma"]
    for document, count in zip(documents, (103, 103, 1), strict=True):  # every version once across the pages
        assert len({v["version"] for v in document["versions"]}) == len(document["versions"]) == count
    assert {v["spec"]["model"] for v in documents[0]["versions"]} == {f"m-{i}" for i in range(103)}


async def test_an_export_over_its_bound_is_refused_before_it_starts(api, database_url, monkeypatch):
    with psycopg.connect(database_url) as conn:
        configs_repo.register(conn, "small", ConfigSpec(model="gpt-4o", provider="openai"))
        # A spec stored before the limits (as the probe's import did): 1 MB of JSON.
        conn.execute(
            "INSERT INTO config_versions (service, version, spec, fingerprint, created_by) "
            "VALUES ('legacy', 'v1', %s, 'f', 'old')",
            (Jsonb({"model": "m", "provider": "p", "extra": {"blob": "x" * 1_000_000}}),),
        )
    async with httpx.AsyncClient(base_url=api.url, headers=api.auth("viewer")) as http:
        everything = await http.get("/api/v1/config/export")
        assert everything.status_code == 422
        assert re.search(r"service 'legacy' version 'v1' has a spec of 100\d{4} bytes", everything.json()["detail"])
        assert "?service=" in everything.json()["detail"]
        one = await http.get("/api/v1/config/export", params={"service": "small"})
        assert one.status_code == 200 and yaml.safe_load(one.text)["service"] == "small"
        # The bound on the whole export, made small here so that one ordinary service is over it.
        monkeypatch.setattr(configs_repo, "EXPORT_MAX_BYTES", 10)
        bounded = await http.get("/api/v1/config/export", params={"service": "small"})
        assert bounded.status_code == 422
        assert re.search(r"the export would hold \d+ bytes of specs, more than the bound of 10", bounded.text)


# ---- config paths ------------------------------------------------------------------------------------------------


async def test_nul_and_invalid_names_in_config_paths_are_4xx(api):
    async with httpx.AsyncClient(base_url=api.url, headers=api.auth("admin")) as http:
        for path in ("/api/v1/config/%00", "/api/v1/config/a%00b/history", "/api/v1/cycles/%00"):
            answer = await http.get(path, params={"key": "k"})
            assert answer.status_code == 400, (path, answer.text)
            assert answer.json()["detail"][0]["field"] == "path"
            assert "NUL" in answer.json()["detail"][0]["reason"]
        nul_key = await http.get("/api/v1/config/chat?key=a%00")
        assert nul_key.status_code == 400 and nul_key.json()["detail"][0]["field"] == "query"
        nul_export = await http.get("/api/v1/config/export?service=%00")
        assert nul_export.status_code == 400
        for name in ("-dash", "x" * 129, "sp ace"):
            for path in (f"/api/v1/config/{name}", f"/api/v1/config/{name}/assignment"):
                answer = await http.get(path, params={"key": "k"})
                assert answer.status_code == 422, (path, answer.text)
                assert answer.json()["detail"][0]["field"] == "path.service"
                assert answer.json()["detail"][0]["value"] == name
        bad_query = await http.get("/api/v1/config/export", params={"service": "../x"})
        assert bad_query.status_code == 422 and bad_query.json()["detail"][0]["field"] == "query.service"


# ---- OTLP --------------------------------------------------------------------------------------------------------

TRACE = "5b8efff798038103d269b633813fc60c"


def _span(span_id: str, **fields) -> dict:
    now = time.time_ns()
    return {
        "traceId": TRACE,
        "spanId": span_id,
        "startTimeUnixNano": str(now - 5_000_000),
        "endTimeUnixNano": str(now),
        "attributes": [
            {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}},
            {"key": "gen_ai.provider.name", "value": {"stringValue": "openai"}},
        ],
        **fields,
    }


def _traces(*spans: dict, resource: object = None) -> dict:
    resource = resource or {"attributes": [{"key": "service.name", "value": {"stringValue": "chat"}}]}
    return {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": list(spans)}]}]}


async def test_malformed_otlp_shapes_are_400_naming_the_path(api):
    shapes = [
        ([], "expected an object with `resourceSpans`"),
        ({"resourceSpans": {"a": 1}}, "resourceSpans = {'a': 1}: expected a list"),
        ({"resourceSpans": ["x"]}, "resourceSpans[0] = 'x': expected an object"),
        ({"resourceSpans": [{"scopeSpans": 3}]}, "resourceSpans[0].scopeSpans = 3: expected a list"),
        ({"resourceSpans": [{"scopeSpans": [{"spans": [7]}]}]}, "resourceSpans[0].scopeSpans[0].spans[0] = 7"),
        (_traces(_span("eee19b7ec3c1b174"), resource=["r"]), "resourceSpans[0].resource = ['r']"),
        (_traces(_span("eee19b7ec3c1b174"), resource={"attributes": "x"}), "resource.attributes = 'x'"),
        (_traces(resource={"attributes": [{"key": "service.name", "value": 1}]}), "(service.name).value = 1"),
    ]
    async with httpx.AsyncClient(base_url=api.url, headers=api.auth("viewer")) as http:
        for body, detail in shapes:
            answer = await http.post("/v1/traces", json=body)
            assert answer.status_code == 400, (body, answer.text)
            assert detail in answer.json()["detail"], (detail, answer.json())


async def test_malformed_and_nul_spans_are_dead_lettered_alone(api, database_url):
    bad = {
        "eee19b7ec3c1b101": _span("eee19b7ec3c1b101", attributes={"k": "v"}),
        "eee19b7ec3c1b102": _span("eee19b7ec3c1b102", status="error"),
        "eee19b7ec3c1b103": _span("eee19b7ec3c1b103", status={"code": "BOGUS"}),
        "eee19b7ec3c1b104": _span("eee19b7ec3c1b104", endTimeUnixNano="soon"),
        "eee19b7ec3c1b105": _span("eee19b7ec3c1b105", endTimeUnixNano=str(2**64)),
        "eee19b7ec3c1b106": _span(
            "eee19b7ec3c1b106", attributes=[{"key": "gen_ai.request.model", "value": {"stringValue": "gpt\x00"}}]
        ),
        "eee19b7ec3c1b107": _span(
            "eee19b7ec3c1b107",
            attributes=[
                {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}},
                {"key": "gen_ai.usage.input_tokens", "value": {"intValue": [1]}},
            ],
        ),
    }
    nul_id = _span("eee19b7ec3c1b1\x000")
    good = _span("eee19b7ec3c1b100")
    body = _traces(good, *bad.values(), nul_id)
    async with httpx.AsyncClient(base_url=api.url, headers=api.auth("viewer")) as http:
        answer = await http.post("/v1/traces", json=body)
        assert answer.status_code == 200, answer.text
        assert answer.json()["partialSuccess"]["rejectedSpans"] == str(len(bad) + 1)
        again = await http.post("/v1/traces", json=body)  # an exporter's retry dead-letters nothing twice
        assert again.json()["partialSuccess"]["rejectedSpans"] == str(len(bad) + 1)
    with psycopg.connect(database_url) as conn:
        events = conn.execute("SELECT event_id FROM events").fetchall()
        dead = dict(conn.execute("SELECT position, reason FROM dead_letters WHERE source = 'otlp'").fetchall())
        codes = {c for (c,) in conn.execute("SELECT code FROM dead_letters WHERE source = 'otlp'")}
    assert events == [(f"otel-{TRACE}-eee19b7ec3c1b100",)]
    reasons = {position.rsplit("/", 1)[1]: reason for position, reason in dead.items()}
    assert len(dead) == len(bad) + 1
    assert codes == {"invalid_span"}  # malformed span fields, refused before the event model
    assert "attributes = {'k': 'v'}: expected a list" in reasons["eee19b7ec3c1b101"]
    assert "status = 'error': expected an object" in reasons["eee19b7ec3c1b102"]
    assert "status.code = 'BOGUS'" in reasons["eee19b7ec3c1b103"]
    assert "endTimeUnixNano = 'soon': not a time in nanoseconds" in reasons["eee19b7ec3c1b104"]
    assert "endTimeUnixNano = '18446744073709551616'" in reasons["eee19b7ec3c1b105"]
    assert "model = 'gpt\\x00': contains a NUL character" in reasons["eee19b7ec3c1b106"]
    assert "intValue = [1]: not an int64" in reasons["eee19b7ec3c1b107"]
    [invalid] = [p for p in dead if p.startswith("otlp/invalid/")]
    assert "spanId = 'eee19b7ec3c1b1\\x000': expected 16 hex digits" in dead[invalid]


# ---- Idempotency-Key ---------------------------------------------------------------------------------------------


async def test_a_reused_idempotency_key_with_another_body_still_writes_its_dead_letters(api, database_url):
    events = [e.model_dump(mode="json") for e in sample_events(2)]
    first = [events[0], {"event_id": "bad-1", "service": "chat"}]
    other = [events[1], {"event_id": "bad-2", "service": "chat", "latency_ms": -1}]
    headers = {**api.auth("viewer"), "Idempotency-Key": "reused-key"}
    async with httpx.AsyncClient(base_url=api.url, headers=headers) as http:
        answers = [(await http.post("/api/v1/metrics", json=body)).json() for body in (first, other, first, other)]
    assert [(a["accepted"], a["duplicates"], a["rejected"]) for a in answers] == [
        (1, 0, 1),
        (1, 0, 1),
        (0, 1, 1),
        (0, 1, 1),
    ]
    with psycopg.connect(database_url) as conn:
        dead = conn.execute("SELECT position, raw FROM dead_letters ORDER BY id").fetchall()
    assert len(dead) == 2  # one per distinct body; the retries of each wrote nothing more
    assert b"bad-1" in dead[0][1] and b"bad-2" in dead[1][1]
    key_id = api.keys["viewer"].split("_")[1]
    assert all(re.fullmatch(rf"http/{key_id}/reused-key/[0-9a-f]{{16}}/1", p) for p, _ in dead)


# ---- logs --------------------------------------------------------------------------------------------------------


def test_any_secret_looking_query_parameter_is_redacted():
    line = (
        '127.0.0.1:5 - "GET /cb?code=1&token=t0k&api_key=k3y&X-Amz-Signature=abc&client_secret=s&password=p'
        '&session_id=z&service=chat HTTP/1.1" 200'
    )
    assert redact(line) == (
        f'127.0.0.1:5 - "GET /cb?code=1&token={REDACTED}&api_key={REDACTED}&X-Amz-Signature={REDACTED}'
        f'&client_secret={REDACTED}&password={REDACTED}&session_id={REDACTED}&service=chat HTTP/1.1" 200'
    )
    assert redact("postgresql://u:pw@h/db?sslpassword=x") == f"postgresql://u:{REDACTED}@h/db?sslpassword={REDACTED}"


async def test_a_token_in_a_query_string_is_not_logged_in_clear(api):
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Collect()
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    try:
        async with httpx.AsyncClient(base_url=api.url, headers=api.auth("viewer")) as http:
            await http.get("/api/v1/config/nobody", params={"key": "u1", "token": secret})
        deadline = time.monotonic() + 5
        while not any("/api/v1/config/nobody" in r for r in records) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    access = [r for r in records if "/api/v1/config/nobody" in r]
    assert access, records
    assert all(secret not in r for r in records)
    assert f"token={REDACTED}" in access[0]


def test_the_limits_are_documented():
    """The limits are constants of their modules (no setting was added): docs/api.md states each."""
    doc = (Path(__file__).parents[2] / "docs" / "api.md").read_text()
    for figure in (
        f"{yamlsafe.MAX_ALIAS_NODES:,}",
        str(yamlsafe.MAX_DEPTH),
        f"{MAX_EXTRA_BYTES // 1024} KiB",
        f"{configs_repo.EXPORT_MAX_BYTES // 2**20} MiB",
    ):
        assert figure in doc, figure
