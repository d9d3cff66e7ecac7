"""Rules as data from the command line: loaded from YAML into Postgres, listed, tried on live data, deleted; the
decide activity reads them."""

from __future__ import annotations

import psycopg
from helpers.servers import settings_env, settings_for

from llm_optimizer.configs import ConfigSpec
from llm_optimizer.resolution import Assignment
from simulator.samples import sample_events
from starter import rules as rules_cli
from storage import configs_repo, rules_repo
from storage.events_repo import land_events

RULES = """
- name: busy-service
  when: {all: [{metric: requests, op: ">=", value: 10}, {not: {metric: error_rate, op: ">", value: 0.5}}]}
  action: alert
  priority: 5
- name: slow-p95
  when: {metric: latency_p95_ms, op: ">", value: 1000000}
  action: backup_model
"""


def test_load_list_dry_run_and_delete(stack, database_url, tmp_path, monkeypatch, capsys):
    for name, value in settings_env(settings_for(stack, database_url)).items():
        monkeypatch.setenv(name, value)
    with psycopg.connect(database_url) as conn:
        configs_repo.register(conn, "chat", ConfigSpec(model="gpt-4o", provider="openai"))
        configs_repo.set_assignment(conn, Assignment(service="chat", active_version="v1"), updated_by="t")
        events = [e.model_copy(update={"config_version": "v1"}) for e in sample_events(300, services=("chat",))]
        land_events(conn, events, source="test")
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)

    assert rules_cli.main(["load", str(path), "--service", "chat"]) == 0
    assert "loaded 2 rules for chat: busy-service, slow-p95" in capsys.readouterr().out
    assert rules_cli.main(["load", str(path), "--service", "chat"]) == 0  # replaced by name, not doubled
    capsys.readouterr()
    assert rules_cli.main(["list", "--service", "chat"]) == 0
    listed = capsys.readouterr().out
    assert "busy-service: alert (priority 5" in listed and listed.count("slow-p95") == 1
    assert rules_cli.main(["list", "--service", "search"]) == 0
    assert capsys.readouterr().out == ""  # chat's rules are chat's only

    assert rules_cli.main(["dry-run", "--service", "chat", "--window", "1h"]) == 0
    tried = capsys.readouterr().out
    assert "ACT  rule busy-service: fired (action alert)" in tried
    assert "ok   rule slow-p95: condition not met (action backup_model)" in tried

    assert rules_cli.main(["delete", "--name", "busy-service"]) == 0
    with psycopg.connect(database_url) as conn:
        assert [r.name for r in rules_repo.for_service(conn, "chat")] == ["slow-p95"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("- name: x\n  when: {metric: requests, op: '~', value: 1}\n  action: alert\n")
    assert rules_cli.main(["load", str(bad)]) == 1
    assert "op = '~'" in capsys.readouterr().err
