"""Each evaluator against cases with known answers; the LLM judge against a scripted OpenAI-compatible server."""

from __future__ import annotations

import pytest
from helpers.fixture_prices import fixture_book
from helpers.scripted_http import Answer, chat_answer, scripted_server

from integrations.llm_grader import JudgeOptions, LLMJudge
from llm_optimizer.errors import CircuitOpen, NotEvaluable, Unavailable, ValidationFailed
from llm_optimizer.evaluation import EvaluationInput, build, names
from llm_optimizer.evaluation.feedback import edit_similarity, levenshtein, rating_score
from llm_optimizer.evaluation.heuristics import is_refusal
from llm_optimizer.evaluation.minilm import model
from llm_optimizer.evaluation.reference import exact_match, rouge_l, token_f1
from llm_optimizer.evaluation.texts import TextPolicy
from llm_optimizer.settings import EvaluationSettings
from runtime.resilience import BreakerState, CircuitBreaker


def item(response: str, **fields) -> EvaluationInput:
    return EvaluationInput(response=response, **fields)


def test_the_registry_names_every_evaluator_and_refuses_unknown_ones():
    assert set(names()) >= {"heuristics", "reference", "feedback", "llm_judge"}
    with pytest.raises(ValidationFailed, match="evaluator = 'bleu': not one of"):
        build("bleu")
    with pytest.raises(ValidationFailed, match=r"heuristics\.min_chars = -1"):
        build("heuristics", {"min_chars": -1})
    with pytest.raises(ValidationFailed, match=r"heuristics\.regex"):
        build("heuristics", {"regex": "("})


def test_heuristics_score_form_keywords_and_refusals():
    schema = {"type": "object", "required": ["answer"], "properties": {"answer": {"type": "string"}}}
    checker = build("heuristics", {"json_schema": schema, "required_keywords": ["answer"], "max_chars": 100})
    good = checker.evaluate(item('{"answer": "42"}'))
    assert good.overall == 1.0 and good.dimensions["format"] == 1.0
    wrong_shape = checker.evaluate(item('{"answer": 42}'))
    assert wrong_shape.dimensions["format"] == 0.0
    not_json = checker.evaluate(item("the answer is 42"))
    assert not_json.dimensions == {"length": 1.0, "format": 0.0, "required_keywords": 1.0, "not_refused": 1.0}
    assert not_json.overall == pytest.approx(0.75)
    too_long = checker.evaluate(item('{"answer": "' + "x" * 136 + '"}'))  # 150 chars: 50% over
    assert too_long.dimensions["length"] == pytest.approx(0.5)

    banned = build("heuristics", {"forbidden_keywords": ["lorem"], "regex": r"^\d+$"})
    assert banned.evaluate(item("Lorem ipsum")).dimensions["forbidden_keywords"] == 0.0
    assert banned.evaluate(item("12345")).dimensions["pattern"] == 1.0

    assert is_refusal("I'm sorry, but I can't help with that request.")
    assert is_refusal("Thanks for asking. I can't help with that.")  # a refusing sentence after another
    assert is_refusal("As an AI language model, I do not have opinions.")
    assert not is_refusal("I can help with that: here is the plan.")
    refused = build("heuristics").evaluate(item("I am unable to assist with this."))
    assert refused.overall == 0.0


def test_reference_metrics_match_hand_computed_values():
    assert exact_match("The Cat!", "cat") == 1.0 and exact_match("a dog", "cat") == 0.0
    # SQuAD normalisation drops "the": prediction [cat, sat], gold [cat, sat, on, mat] -> P 1, R 0.5.
    assert token_f1("the cat sat", "the cat sat on the mat") == pytest.approx(2 / 3)
    assert token_f1("", "") == 1.0 and token_f1("x", "") == 0.0
    # LCS of "police killed the gunman" and "police kill the gunman" is 3 of 4 words each way.
    assert rouge_l("police killed the gunman", "police kill the gunman") == pytest.approx(0.75)
    assert rouge_l("the gunman police killed", "police kill the gunman") == pytest.approx(0.5)
    scored = build("reference", {"metrics": ["exact_match", "token_f1"]}).evaluate(item("Paris", reference="paris."))
    assert scored.overall == 1.0
    with pytest.raises(NotEvaluable, match="no reference"):
        build("reference").evaluate(item("Paris"))
    final_number = build("reference", {"metrics": ["exact_match"], "extract": r"-?\d+(?:\.\d+)?"})
    assert final_number.evaluate(item("3 + 4 = 7, so the answer is 72", reference="72")).overall == 1.0
    assert final_number.evaluate(item("7 apples, then 8", reference="7")).overall == 0.0
    assert final_number.evaluate(item("no number", reference="7")).overall == 0.0


def test_minilm_embeddings_reproduce_the_published_similarities():
    """The similarity matrix printed in the sentence-transformers quickstart for all-MiniLM-L6-v2."""
    embeddings = model().embed(["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."])
    similarity = embeddings @ embeddings.T
    assert similarity[0, 1] == pytest.approx(0.6660, abs=5e-4)
    assert similarity[0, 2] == pytest.approx(0.1046, abs=5e-4)
    assert similarity[1, 2] == pytest.approx(0.1411, abs=5e-4)
    scored = build("reference", {"metrics": ["embedding"]}).evaluate(
        item("It's so sunny outside!", reference="The weather is lovely today.")
    )
    assert scored.overall == pytest.approx(0.6660, abs=5e-4)


def test_feedback_turns_ratings_thumbs_and_corrections_into_scores():
    assert rating_score(4) == 0.75 and rating_score(1) == 0.0
    assert levenshtein("kitten", "sitting") == 3
    assert edit_similarity("kitten", "sitting") == pytest.approx(1 - 3 / 7)
    feedback = build("feedback")
    assert feedback.evaluate(item("", signals={"rating": 5, "thumbs": "down"})).overall == 0.5
    implicit = feedback.evaluate(item("kitten", signals={"correction": "sitting"}))
    assert implicit.overall == pytest.approx(1 - 3 / 7) and implicit.confidence == 0.5
    assert feedback.evaluate(item("x", signals={"user_feedback": 1.0, "retried": True})).overall == 1.0
    with pytest.raises(NotEvaluable):
        feedback.evaluate(item("no signal"))


def test_texts_are_redacted_before_they_are_stored():
    policy = TextPolicy.from_settings(EvaluationSettings(store_text=True, redact_patterns=[r"\bacct-\d+\b"]))
    text = "mail jane.doe@example.com about acct-12345 using sk-abcdefghijklmnopqrstu"
    assert policy.redact(text) == "mail [REDACTED] about [REDACTED] using [REDACTED]"


def test_circuit_breaker_opens_half_opens_and_recovers():
    now = [0.0]
    breaker = CircuitBreaker("svc", failure_threshold=3, reset_after_s=60, recovery_successes=2, clock=lambda: now[0])
    for _ in range(2):
        breaker.failure()
    breaker.success()  # a success resets the run of failures
    for _ in range(3):
        breaker.failure()
    assert breaker.state is BreakerState.open
    with pytest.raises(CircuitOpen, match="next try in 60 s"):
        breaker.check()
    now[0] = 61
    assert breaker.state is BreakerState.half_open
    breaker.failure()  # one failure while half open opens it again
    assert breaker.state is BreakerState.open
    now[0] = 130
    breaker.success()
    breaker.success()
    assert breaker.state is BreakerState.closed


def judge(url: str, **options) -> LLMJudge:
    return LLMJudge(JudgeOptions(base_url=url, model="gpt-4o-mini", retries=1, timeout_s=1.0, **options))


QA = item("Paris is the capital of France.", request="What is the capital of France?", reference="Paris")


def test_judge_scores_caches_and_records_its_cost():
    with scripted_server([Answer(body=chat_answer({"correctness": 10, "helpfulness": 7, "safety": 10}))]) as server:
        scorer = judge(server.url)
        first = scorer.evaluate(QA)
        again = scorer.evaluate(QA)
    assert first.dimensions == {"correctness": 1.0, "helpfulness": pytest.approx(6 / 9), "safety": 1.0}
    assert first.overall == pytest.approx((2 + 6 / 9) / 3)
    assert first.cost_usd == pytest.approx(fixture_book().price("gpt-4o-mini").cost(500, 40))
    assert again.overall == first.overall and again.cost_usd == 0.0
    assert len(server.requests) == 1  # the second was served from the cache
    method, path, body = server.requests[0]
    assert (method, path) == ("POST", "/chat/completions")
    assert body["model"] == "gpt-4o-mini" and body["response_format"] == {"type": "json_object"}
    assert "Reference answer:\nParis" in body["messages"][1]["content"]


def test_judge_retries_a_429_and_refuses_malformed_answers():
    good = chat_answer({"correctness": 1, "helpfulness": 1, "safety": 1})
    with scripted_server([Answer(429, {"error": "slow down"}, {"Retry-After": "0"}), Answer(body=good)]) as server:
        assert judge(server.url).evaluate(QA).overall == 0.0
        assert len(server.requests) == 2
    with scripted_server([Answer(body=chat_answer("Sure! The response is great."))]) as server:
        scorer = judge(server.url)
        with pytest.raises(NotEvaluable, match="not the JSON asked for"):
            scorer.evaluate(QA)
        assert scorer.breaker.state is BreakerState.closed  # an odd answer is not an outage
    out_of_range = chat_answer({"correctness": 11, "helpfulness": 5, "safety": 5})
    with scripted_server([Answer(body=out_of_range)]) as server, pytest.raises(NotEvaluable, match=r"outside 1\.\.10"):
        judge(server.url).evaluate(QA)


def test_judge_timeouts_and_errors_open_the_circuit():
    slow = Answer(body=chat_answer({"correctness": 5}), delay_s=1.5)
    with scripted_server([slow]) as server, pytest.raises(Unavailable, match="ReadTimeout"):
        judge(server.url, failure_threshold=1).evaluate(QA)
    with scripted_server([Answer(500, {"error": "boom"})]) as server:
        scorer = judge(server.url, failure_threshold=2)
        for _ in range(2):
            with pytest.raises(Unavailable, match="HTTP 500"):
                scorer.evaluate(item(f"answer {_}"))
        assert scorer.breaker.state is BreakerState.open
        hits = len(server.requests)
        with pytest.raises(Unavailable, match="circuit open"):
            scorer.evaluate(item("another"))
        assert len(server.requests) == hits == 4  # 2 calls x (1 try + 1 retry); none once open
