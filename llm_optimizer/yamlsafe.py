"""The one way the product reads YAML that a user wrote: config imports, rules, settings and price files.

`yaml.safe_load` builds no objects from tags, but it still lets a few hundred bytes of anchors and aliases
expand into billions of values (the "billion laughs"), nest deep enough to exhaust the stack, or carry an
integer or a date that Python cannot build. Every one of those is refused here, before any value is built, with
an `UnsafeYaml` (`llm_optimizer/errors.py`) that names the problem (see "Limits and refusals" in docs/api.md):

- aliases may add at most `MAX_ALIAS_NODES` values beyond those written out (a few `<<: *defaults` merges are
  fine, an alias bomb is not); an alias that refers to its own ancestor (a cycle) is refused;
- values may nest at most `MAX_DEPTH` levels, aliases expanded.

`UnsafeYaml` is both a `yaml.YAMLError` (callers that already catch YAML errors report it as such) and a
`ValidationFailed` (the HTTP API answers 422 with its message).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml

from llm_optimizer.errors import UnsafeYaml

MAX_ALIAS_NODES = 10_000
MAX_DEPTH = 100

# libyaml's composer when it is installed (an order of magnitude faster); the pure-Python one otherwise.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def safe_load(text: str | bytes, *, what: str = "YAML") -> Any:
    """The single document of `text` (None when empty), or `UnsafeYaml` naming `what` and the problem."""
    documents = list(safe_load_all(text, what=what))
    if len(documents) > 1:
        raise UnsafeYaml(f"{what}: expected one YAML document, found {len(documents)}")
    return documents[0] if documents else None


def safe_load_all(text: str | bytes, *, what: str = "YAML") -> Iterator[Any]:
    """Every document of `text`, each checked against the limits before it is built."""
    loader = _Loader(text)
    try:
        index = 0
        while True:
            try:
                if not loader.check_node():
                    return
                node = loader.get_node()
                _check(node, what if index == 0 else f"{what} (document {index + 1})")
                document = loader.construct_document(node)
            except UnsafeYaml:
                raise
            except yaml.YAMLError as exc:
                raise UnsafeYaml(f"{what}: not valid YAML ({exc})") from None
            except (ValueError, OverflowError, RecursionError) as exc:
                # A value that matches a YAML type but that Python cannot build: `2020-13-45` as a date, an
                # integer of more digits than Python converts.
                raise UnsafeYaml(f"{what}: a value cannot be read ({exc})") from None
            index += 1
            yield document
    finally:
        loader.dispose()


def _check(root: yaml.Node, what: str) -> None:
    """Count the values of the document as if every alias were expanded, and its depth, without expanding."""
    written: set[int] = set()  # ids of the nodes as they appear in the text
    expanded: dict[int, tuple[int, int]] = {}  # node id -> (values, depth) of its expansion
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            children = _children(node)
            values = 1 + sum(expanded[id(c)][0] for c in children)
            depth = 1 + max((expanded[id(c)][1] for c in children), default=0)
            expanded[key] = (values, depth)
            if depth > MAX_DEPTH:
                raise UnsafeYaml(f"{what}: values nest {depth} levels deep, more than the limit of {MAX_DEPTH}")
            if values - len(written) > MAX_ALIAS_NODES:
                raise UnsafeYaml(
                    f"{what}: aliases expand the document to more than {len(written) + MAX_ALIAS_NODES} values "
                    f"({len(written)} written out; aliases may add at most {MAX_ALIAS_NODES}): refused as an "
                    f"alias bomb"
                )
            continue
        if key in on_path:
            raise UnsafeYaml(f"{what}: an alias refers to a value that contains it (a cycle): refused")
        if key in expanded:
            continue  # an alias to a node already measured: its expansion is known
        written.add(key)
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []
