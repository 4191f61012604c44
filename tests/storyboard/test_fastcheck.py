"""The fast schema predicates agree with jsonschema on every schema we ship: on valid
storyboards and requests, and on thousands of mutations of them (a key gone, a value of
another type, a string too long, an unknown key, ...). Only what they refuse goes to
jsonschema, so a value they accepted wrongly would go unreported: this is what rules it out."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hailuo_pipe.storyboard import fastcheck, schemas, yamldoc
from hailuo_pipe.validate import check

ROOT = Path(__file__).parents[2]
NAMES = ["storyboard"] + [
    f"providers/{p.stem}" for p in sorted((ROOT / "schemas" / "providers").glob("*.json"))
]


def jsonschema_says_valid(name: str, value: Any) -> bool:
    return not any(True for _ in schemas.validator(name).iter_errors(value))


def _examples() -> dict[str, list[Any]]:
    """Documents and request bodies validate checks, gathered while it checks our storyboards."""
    found: dict[str, list[Any]] = {name: [] for name in NAMES}
    real = schemas.SchemaMemo._checked

    def gather(self, schema, data, run):  # type: ignore[no-untyped-def]
        found[schema].append(copy.deepcopy(data))
        return real(self, schema, data, run)

    schemas.SchemaMemo._checked = gather  # type: ignore[method-assign]
    try:
        for spec in sorted((ROOT / "specs").glob("*.yaml")):
            check(spec)
        for spec in sorted((ROOT / "tests" / "storyboard" / "corpus").rglob("*.yaml")):
            doc, problems = yamldoc.load(spec)
            if not problems:
                found["storyboard"].append(doc.data)
    finally:
        schemas.SchemaMemo._checked = real  # type: ignore[method-assign]
    return {name: values for name, values in found.items() if values}


EXAMPLES = _examples()


@pytest.mark.parametrize("name", NAMES)
def test_every_schema_we_ship_compiles(name: str) -> None:
    assert schemas.fast_check(name) is not None  # else everything it checks is slow again


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_the_predicates_agree_with_jsonschema_on_what_we_validate(name: str) -> None:
    for value in EXAMPLES[name]:
        assert schemas.valid_fast(name, value) == jsonschema_says_valid(name, value), value


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 2000)
    | st.floats(-10, 2000, allow_nan=False)
    | st.sampled_from(["", "x", "preview", "768p", "1080p", "first", "last", "a" * 2100])
    | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out += _paths(item, (*path, i))
    return out


def _mutate(value: Any, data: st.DataObject) -> Any:
    value = copy.deepcopy(value)
    for _ in range(data.draw(st.integers(1, 3))):
        paths = _paths(value)
        path = data.draw(st.sampled_from(paths))
        op = data.draw(st.sampled_from(["replace", "delete", "add", "retype", "copy"]))
        if not path:
            if op == "replace":
                value = data.draw(JSON)
            continue
        parent = value
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        if op == "replace":
            parent[last] = data.draw(JSON)
        elif op == "delete":
            del parent[last]
        elif op == "add" and isinstance(parent[last], dict):
            key = data.draw(st.sampled_from(["zz", "prompt", "image", "id"]))
            parent[last][key] = data.draw(JSON)
        elif op == "retype":
            parent[last] = json.loads(json.dumps(str(parent[last])))
        elif op == "copy" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[last]))
    return value


@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_the_predicates_agree_with_jsonschema_on_mutations(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(EXAMPLES)))
    original = data.draw(st.sampled_from(EXAMPLES[name]))
    value = _mutate(original, data)
    assert schemas.valid_fast(name, value) == jsonschema_says_valid(name, value), value


def test_a_keyword_the_predicates_do_not_know_leaves_the_schema_to_jsonschema() -> None:
    with pytest.raises(fastcheck.Unsupported):
        fastcheck.compile_schema({"type": "object", "patternProperties": {"^x": {}}})
    with pytest.raises(fastcheck.Unsupported):
        fastcheck.compile_schema({"contains": {"const": 1}})


@pytest.mark.parametrize(
    ("schema", "value", "valid"),
    [
        ({"const": 1}, True, False),  # jsonschema's equality: True is not 1
        ({"const": 1}, 1.0, True),
        ({"enum": [False, 0]}, 0, True),
        ({"type": "integer"}, 2.0, True),
        ({"type": "integer"}, True, False),
        ({"type": "number"}, False, False),
        ({"uniqueItems": True}, [1, True], True),
        ({"uniqueItems": True}, [1, 1.0], False),
        ({"pattern": "b"}, "abc", True),  # re.search, not re.match
        ({"minLength": 2}, 5, True),  # string keywords skip other types
        ({"if": {"const": 1}, "then": {"const": 2}}, 1, False),
        ({"then": {"const": 2}}, 1, True),  # then without if asserts nothing
        ({"oneOf": [{"type": "integer"}, {"type": "number"}]}, 1, False),
    ],
)
def test_jsonschema_semantics_at_the_edges(schema: dict[str, Any], value: Any, valid: bool) -> None:
    assert fastcheck.compile_schema(schema)(value) is valid
    from jsonschema import Draft202012Validator

    assert Draft202012Validator(schema).is_valid(value) is valid
