"""The application client is a light distribution of its own (client/pyproject.toml): it imports and works with
nothing of the server, and every third-party module it loads comes from the dependencies it declares."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

CLIENT = Path(__file__).resolve().parents[2] / "client"
# The server's packages and its heavy dependencies: the client must load none of them.
SERVER_ONLY = [
    "llm_optimizer", "api", "storage", "workflows", "activities", "starter", "devstack", "runtime", "integrations",
    "simulator", "benchmarks", "worker", "temporalio", "scipy", "polars", "fastapi", "numpy", "pyarrow", "psycopg",
    "sqlalchemy", "uvicorn",
]  # fmt: skip

# Run with `python -I` from an empty folder: sys.path is the client folder, the standard library and site-packages
# (no repository root, no PYTHONPATH). Any import of a server module fails loudly instead of quietly succeeding
# through the server's editable install; the client is then exercised (a resolution and a report over a mock
# transport, a span, a CloudEvent) and the top-level modules it loaded are reported with their distributions.
PROBE = r"""
import importlib.abc, importlib.metadata, json, sys
client_dir, blocked = sys.argv[1], set(sys.argv[2].split(","))
at_start = set(sys.modules)  # the interpreter's own start-up (site, the .pth hooks of editable installs)

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in blocked:
            raise ImportError(f"the client imported the server-side module {name}")
        return None

sys.meta_path.insert(0, Refuse())
sys.path = [client_dir] + [p for p in sys.path if p.startswith(sys.base_prefix) or p.endswith("site-packages")]

import httpx
from optimizer_client import KafkaReporter, LLMEvent, OptimizerClient
from optimizer_client.otel import record_llm_call
from optimizer_client.wire import to_cloudevent
from opentelemetry.trace import NoOpTracer

def answer(request):
    if request.url.path.endswith("/assignment"):
        return httpx.Response(200, json={
            "assignment": {"service": "chat", "active_version": "v1", "canary_version": "v2", "canary_percent": 50},
            "specs": {"v1": {"model": "gpt-4o", "provider": "openai"},
                      "v2": {"model": "gpt-4o-mini", "provider": "openai"}},
            "ttl_s": 5,
        })
    sent = json.loads(request.content)["metrics"]
    counts = {"accepted": len(sent), "duplicates": 0, "anomalies": 0, "rejected": 0, "errors": []}
    return httpx.Response(200, json=counts)

event = LLMEvent(event_id="e1", timestamp="2026-01-01T00:00:00Z", service="chat", model="gpt-4o", provider="openai",
                 latency_ms=420)
with OptimizerClient("http://optimizer", "key", transport=httpx.MockTransport(answer)) as client:
    versions = sorted({client.resolve("chat", f"user-{i}").version for i in range(50)})
    accepted = client.report([event]).accepted
with record_llm_call(NoOpTracer(), model="gpt-4o", provider="openai") as call:
    call.usage(input_tokens=1, output_tokens=2)
assert to_cloudevent(event)["data"]["event_id"] == "e1" and KafkaReporter.__name__ == "KafkaReporter"

top = sorted({name.partition(".")[0] for name in set(sys.modules) - at_start} - set(sys.stdlib_module_names))
owners = importlib.metadata.packages_distributions()
def installed(module):  # not the standard library (e.g. _sysconfigdata_*), not a built-in like cython_runtime
    where = getattr(module, "__file__", None) or ""
    return "site-packages" in where or where.startswith(client_dir)

print(json.dumps({
    "file": sys.modules["optimizer_client"].__file__, "versions": versions, "accepted": accepted,
    "modules": {name: owners.get(name, []) for name in top if installed(sys.modules[name])},
}))
"""


# Without the extras: the HTTP client imports, and each extra's module says which extra it needs.
PROBE_WITHOUT_EXTRAS = r"""
import importlib.abc, sys
client_dir, blocked = sys.argv[1], set(sys.argv[2].split(","))

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None

sys.meta_path.insert(0, Refuse())
sys.path = [client_dir] + [p for p in sys.path if p.startswith(sys.base_prefix) or p.endswith("site-packages")]
from optimizer_client import OptimizerClient
for name in ("optimizer_client.kafka", "optimizer_client.otel"):
    try:
        __import__(name)
    except ImportError as exc:
        print(exc)
"""


def _probe(tmp_path: Path, probe: str, blocked: list[str]) -> str:
    """What the probe prints, run in isolation from an empty folder."""
    done = subprocess.run(
        [sys.executable, "-I", "-c", probe, str(CLIENT), ",".join(blocked)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _closure(requirements: list[str]) -> set[str]:
    """The installed distributions these requirements bring, with theirs, and what those import when it is there
    (httpx loads its command line's click and pygments when installed: requirements of extras count, one level).
    A requirement that is not installed (e.g. for an older Python) brings nothing."""
    seen: set[str] = set()
    optional: set[str] = set()
    todo = [_name(r) for r in requirements]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        optional |= {_name(r) for r in requires if "extra ==" in r}
        todo += [_name(r) for r in requires if "extra ==" not in r]
    return seen | optional


def test_the_client_works_with_only_its_own_dependencies(tmp_path):
    report = json.loads(_probe(tmp_path, PROBE, SERVER_ONLY))
    assert Path(report["file"]).resolve().is_relative_to(CLIENT)
    assert report["versions"] == ["v1", "v2"] and report["accepted"] == 1
    loaded = set(report["modules"])
    assert not loaded & set(SERVER_ONLY), sorted(loaded & set(SERVER_ONLY))

    project = tomllib.loads((CLIENT / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    allowed = _closure(declared) | {"llm-optimizer-client"}
    foreign = {
        module: owners
        for module, owners in report["modules"].items()
        if not {_name(owner) for owner in owners} & allowed
    }
    assert not foreign, f"modules from distributions the client does not declare: {foreign}"


def test_without_its_extras_the_client_imports_and_names_the_extra_it_lacks(tmp_path):
    lines = _probe(tmp_path, PROBE_WITHOUT_EXTRAS, [*SERVER_ONLY, "aiokafka", "opentelemetry"]).splitlines()
    assert lines == [
        "KafkaReporter needs aiokafka, the kafka extra: pip install './client[kafka]' from a clone",
        "optimizer_client.otel needs opentelemetry-api, the otel extra: pip install './client[otel]' from a clone",
    ]


def test_the_server_distribution_does_not_ship_the_client():
    server = tomllib.loads((CLIENT.parent / "pyproject.toml").read_text())
    included = server["tool"]["setuptools"]["packages"]["find"]["include"]
    assert not [p for p in included if p.startswith("optimizer_client")], included
    assert not (CLIENT.parent / "optimizer_client").exists(), "the client lives in client/optimizer_client"
    client = tomllib.loads((CLIENT / "pyproject.toml").read_text())["project"]
    assert {_name(r) for r in client["dependencies"]} == {"httpx", "pydantic"}
