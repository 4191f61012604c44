"""A storyboard is read in one pass over the parser's events, and that pass gives exactly what
composing PyYAML's node tree and converting it gives: data, positions, block scalars, problems."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hailuo_pipe.storyboard import yamldoc
from hailuo_pipe.storyboard.yamlevents import EventBuilder

ROOT = Path(__file__).parents[2]
FILES = sorted(
    [*(ROOT / "tests" / "storyboard" / "corpus").rglob("*.yaml"), *(ROOT / "specs").glob("*.yaml")]
)


def by_nodes(text: str) -> tuple[Any, ...]:
    doc, problems = yamldoc._load_nodes(text, yamldoc.Document("f.yaml", None))
    return doc.data, doc.values, doc.keys, doc.block_scalars, problems


def by_events(text: str) -> tuple[Any, ...] | None:
    doc = yamldoc.Document("f.yaml", None)
    problems = EventBuilder(doc).build(text)
    if problems is None:
        return None
    return doc.data, doc.values, doc.keys, doc.block_scalars, problems


def same(text: str) -> bool:
    """Both ways agree; False when the one pass handed the document to the node tree."""
    fast = by_events(text)
    if fast is None:
        return False
    assert fast == by_nodes(text)
    return True


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_storyboard_we_ship_or_test_reads_the_same_in_one_pass(path: Path) -> None:
    text = path.read_text(encoding="utf-8-sig")
    if "\x00" not in text:
        same(text)


CASES = {
    "duplicate key": "a: 1\nb: 2\na: 3\n",
    "duplicate nested": "s:\n  - id: x\n    id: y\n",
    "a list as a key": "? [a, b]\n: 1\nc: 2\n",
    "a mapping as a key": "{{a: 1}: 2, b: 3}\n",
    "keys of other types": "1: a\ntrue: b\nnull: c\n~: d\n2.5: e\n2026-01-02: f\n'=': g\n=: h\n",
    "scalars of every type": "a: [1, -2, 0x1f, 0o17, 1_000, 1:20, 2.5, .inf, -.nan, yes, No, "
    "~, null, '', 2026-01-02, 2026-01-02T03:04:05Z, '1', \"2\"]\n",
    "an impossible timestamp": "a: 1\nb: 2026-02-30\n",
    "explicit tags": "a: !!str 1\nb: !!int '3'\nc: !!float 1\nd: !!binary aGk=\n",
    "a tag nobody knows": "a: !sorcery x\n",
    "a bad int tag": "a: !!int abc\n",
    "a tag on a mapping": "a: !!set {x, y}\nb: !custom {c: 1}\n",
    "block scalars": "a: |\n  one\n  two\nb: >\n  three\n  four\nc: plain\n",
    "an empty file": "",
    "comments only": "# nothing here\n",
    "an empty document": "---\n",
    "two documents": "a: 1\n---\nb: 2\n",
    "two documents, the second broken": "a: 1\n---\nb: [\n",
    "a duplicate before a YAML error": "a: 1\na: 2\nb: [\n",
    "a tab": "a:\n\tb: 1\n",
    "an unclosed quote": 'a: "open\n',
    "nested lists": "a: [[1, [2, [3, {b: [4]}]]], []]\n",
    "empty collections": "a: {}\nb: []\nc:\n",
    "a sequence at the top": "- 1\n- a: 2\n",
    "a scalar at the top": "just text\n",
    "unicode": "prompt: \"caf\\u00e9 — ☕\"\nk\u00e9y: v\n",
}


@pytest.mark.parametrize("text", CASES.values(), ids=CASES.keys())
def test_edge_cases_read_the_same_in_one_pass(text: str) -> None:
    assert same(text)


def nested(depth: int, leaf: str = "x") -> str:
    return "[" * depth + leaf + "]" * depth


@pytest.mark.parametrize(
    "text",
    [
        f"a: {nested(63)}\n",  # the deepest allowed
        f"a: {nested(64)}\n",  # a scalar one level too deep
        f"a: {nested(65)}\n",  # a collection one level too deep
        f"a: {nested(5000)}\n",  # would overflow libyaml's recursive composer
        f"a: 1\na: 2\nb: {nested(70)}\n",
        f"a: {nested(70)}\nb: [\n",  # too deep before a YAML error: too deep wins
        f"a: [\nb: {nested(70)}\n",
    ],
    ids=["63", "64", "65", "5000", "duplicate-then-deep", "deep-then-error", "error-then-deep"],
)
def test_nesting_is_bounded_in_the_same_pass(text: str) -> None:
    assert same(text)


def test_limits_end_conversion_as_they_do_from_the_node_tree(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(yamldoc, "MAX_NODES", 5)
    assert same("a: [1, 2, 3, 4, 5, 6]\n")
    assert same("a: [1, 2, 3, 4, 5, 6]\nb: [\n")  # a YAML error later still wins
    assert same(f"a: [1, 2, 3, 4, 5, 6]\nb: {nested(70)}\n")  # and so does nesting
    assert same("a: [1, 2, 3, 4, 5, 6]\n---\nb: 1\n")  # and a second document
    monkeypatch.setattr(yamldoc, "MAX_NODES", 1_000_000)
    monkeypatch.setattr(yamldoc, "MAX_CHARS", 10)
    assert same("a: 0123456789abc\n")


@pytest.mark.parametrize(
    "text",
    ["a: &x 1\nb: *x\n", "base: &b {p: 1}\nscene:\n  <<: *b\n  q: 2\n", "a: {<<: {p: 1}}\n"],
    ids=["alias", "merge-alias", "merge-inline"],
)
def test_anchors_aliases_and_merges_take_the_node_tree_way(text: str) -> None:
    assert by_events(text) is None
    doc, problems = yamldoc.load_text(text, "f.yaml")
    assert (doc.data, doc.values, doc.keys, doc.block_scalars, problems) == by_nodes(text)


def test_a_plain_storyboard_is_parsed_once_and_never_composed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parses: list[str] = []
    real = yamldoc._Loader

    class Counting(real):  # type: ignore[misc,valid-type]
        def __init__(self, stream: str) -> None:
            parses.append("parse")
            super().__init__(stream)

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("composed a node tree")

    monkeypatch.setattr(yamldoc, "_Loader", Counting)
    monkeypatch.setattr(yaml, "compose_all", never)
    monkeypatch.setattr(yaml, "parse", never)
    text = (ROOT / "specs" / "demo.yaml").read_text()
    doc, problems = yamldoc.load_text(text, "demo.yaml")
    assert problems == [] and doc.data["scenes"]
    assert parses == ["parse"]


scalars = st.one_of(
    st.text(max_size=8),
    st.integers(-10**6, 10**6),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
)
trees = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=6) | st.integers(0, 9), inner, max_size=4),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    tree=trees,
    flow=st.sampled_from([None, True, False]),
    style=st.sampled_from([None, '"', "'", "|"]),
)
def test_any_document_reads_the_same_in_one_pass(
    tree: Any, flow: bool | None, style: str | None
) -> None:
    text = yaml.safe_dump(tree, default_flow_style=flow, default_style=style, allow_unicode=True)
    if "\x00" not in text:
        assert same(text)
