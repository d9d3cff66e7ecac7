"""The fleet simulator: LLM-backed services replaying real outcomes, for the demo, scenarios and benchmarks."""
