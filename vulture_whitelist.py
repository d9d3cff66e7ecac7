"""Names `make lint`'s dead-code check (vulture, docs/dependencies.md) must not report: each is used, though no
Python code of the product calls it by name. Reviewed one by one; a new entry says why it is used.

Patterns that hold everywhere are in pyproject.toml's [tool.vulture] instead (pydantic's model_config).
"""

# ruff: noqa: B018
# mypy: ignore-errors

from vulture.whitelist_utils import Whitelist

_ = Whitelist()

# --- Temporal: signal, update and query handlers, called by clients through the server, by name -----------------
_.promote  # CanaryRollout's signal (workflows/canary_rollout.py)
_.pause  # CanaryRollout's signal (OptimizationCycle's controls are made from workflows/cycle_controls.py CONTROLS)
_.resume  # CanaryRollout's signal
_.emergency_stop  # signals of CanaryRollout and Exploration
_._validate_control  # the `control` update's validator (@control.validator)
_.internal  # OptimizationCycle's dynamic signal handler (the watcher's breaches, a child rollout's progress)
_.start_to_close_timeout  # workflows/options.py: fields read as **kwargs of execute_activity
_.retry_policy  # workflows/options.py: as above

# --- FastAPI: routes and middleware, registered by decorator and called by the server ------------------------------
_.measure  # api/app.py: @app.middleware("http")
_.invalid_request  # api/app.py: @app.exception_handler
_.import_  # POST /api/v1/config/import
_.pause  # POST /api/v1/admin/pause (also a Temporal signal, above)
_.resume  # POST /api/v1/admin/resume
_.emergency_stop  # POST /api/v1/admin/emergency-stop
_.cycle_status  # GET /api/v1/admin/cycles/{service}, and the client's method of the same call
_.health_detailed  # GET /health/detailed
_.otlp_traces  # POST /v1/traces
_.acks  # api/routes/control.py: a response model's field, serialized to JSON

# --- pydantic: validators registered by decorator, settings hooks, and fields that are read as data ----------------
_._one_target  # api/routes/control.py: @model_validator
_._needs_target  # api/routes/control.py: @model_validator
_._storable_extra  # llm_optimizer/configs.py: @field_validator
_._key_defaults_to_model  # llm_optimizer/decision.py: @model_validator
_._valid_schema  # llm_optimizer/evaluation/heuristics.py: @field_validator
_._bounded_attributes  # llm_optimizer/events.py: @field_validator
_._consistent  # llm_optimizer/events.py: @model_validator (twice)
_._storable  # llm_optimizer/events.py: @field_validator
_._fold_flat_carried  # llm_optimizer/payloads.py: @model_validator (mode="before"), old payload shapes
_._something  # llm_optimizer/payloads.py: @model_validator
_._priced  # llm_optimizer/pricing.py: @model_validator
_._share_needs_canary  # llm_optimizer/resolution.py: @model_validator
_._postgres_only  # llm_optimizer/settings.py: @field_validator
_._split_brokers  # llm_optimizer/settings.py: @field_validator
_._ends_at_full_traffic  # llm_optimizer/strategies.py: @model_validator
_.settings_customise_sources  # pydantic-settings calls it on Settings
_.dotenv_settings  # its signature, fixed by pydantic-settings
_.file_secret_settings  # its signature, fixed by pydantic-settings
_.get_field_value  # PydanticBaseSettingsSource's abstract method (our YAML and alias sources)
# Fields of models that are serialized (the wire, the database, workflow payloads, API answers) or accepted on input
# and kept: read by their users, by the JSON, not by our code.
_.rate_limited  # an event status (llm_optimizer/events.py, the client's wire.py)
_.cancelled  # an event status
_.top_k  # GenerationParams, passed to the application with its config
_.stop_sequences  # GenerationParams, as above
_.capabilities  # the model registry's answer (integrations/model_registry.py)
_.exported_at  # a config export's header
_.policy_name  # a governance verdict's field (llm_optimizer/decision.py, docs/integrations.md)
_.specversion  # CloudEvents envelope attributes (llm_optimizer/events.py)
_.datacontenttype  # CloudEvents
_.dataschema  # CloudEvents
_.subject  # CloudEvents
_.medium  # an anomaly severity (AnomalySeverity)
_.root_cause_hypothesis  # an alert's field, in the API's answer
_.recommended_actions  # an alert's field, in the API's answer
_.unknown  # a dead-letter code (rows from before codes existed)
_.z_vs_floor  # an exploration arm's statistic, in the workflow's query and history
_.repeats_held  # the cycle's carried state (payloads.py) and its write in activities/thresholds.py
_.time_left_s  # a canary stage's status, in the query
_.data_late_s  # a canary stage's status, in the query
_.runs_in_this_history  # the cycle's status, in the query
_.as_of  # a price list's date (tests/fixtures/pricing.yaml)
_.currency  # a price list's currency
_.condition_met  # RuleTrace's field, in the decision's audit
_.debug  # a setting (docs/configuration.md)
_.checked_s_ago  # a readiness probe's answer (runtime/probes.py), in /ready's JSON
_.rejected_spans  # the OTLP response's partial_success (api/otlp.py), a protobuf field set by name
_.error_message  # as above

# --- registries and entry points that refer to code by name -------------------------------------------------------
_.Feedback  # an evaluator, registered by @register("feedback") (llm_optimizer/evaluation/base.py)
_.Heuristics  # an evaluator, @register("heuristics")
_.ReferenceBased  # an evaluator, @register("reference")
_.worker_main  # starter/cli.py: the `llm-optimizer worker` command, named in COMMANDS as "starter.cli:worker_main"
# storage/schema.py: the tables of SQLAlchemy's metadata, which Alembic's autogenerate compares with the database.
_.config_versions
_.config_assignments
_.rollout_verdicts
_.decisions
_.optimization_events
_.policies
_.rollups_1m
_.rollups_1h
_.rollup_watermarks
_.api_keys
_.event_texts
_.quality_evaluations
_.ingestion_watermarks
_.ingestion_feeds

# --- the standard library and other libraries read these attributes -------------------------------------------------
_.daemon_threads  # socketserver.ThreadingMixIn (runtime/health.py)
_.log_message  # http.server's hook, overridden to keep the health server quiet
_.converter  # logging.Formatter.converter: UTC timestamps (runtime/logs.py)
_.autocommit  # psycopg's connection attribute, set (benchmarks/analysis.py)

# --- public API of the application client (client/optimizer_client), called by applications ----------------------
_.__getattr__  # the client package's module __getattr__ (PEP 562): KafkaReporter imported on first use
_.record_llm_call  # optimizer_client.otel: records one LLM call as a GenAI span

# --- used by the tests only, kept on purpose ---------------------------------------------------------------------
_.synthetic_outcomes  # simulator/synthetic.py: the synthetic fleet's outcomes as a frame, the library form of its CLI
