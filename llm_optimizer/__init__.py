"""Domain logic of llm-auto-optimizer: data model, settings, statistics and decisions (no I/O).

Nothing is imported here: the workflows' sandbox loads this package for `llm_optimizer.ids`, and must not load its
own copy of `llm_optimizer.errors` (an `except PayloadRefused` in a workflow would then miss the class that the
passed-through `llm_optimizer.payloads` raises). Errors are imported from `llm_optimizer.errors`.
"""
