"""A fast yes/no check against our JSON Schemas, before jsonschema is asked why.

jsonschema builds a validator object, an error generator and its context for every keyword of
every value: a third of a millisecond per provider request, and as much again per scene for
the storyboard itself, which made validating 10,000 new scenes take seconds. Almost everything
checked is valid, so each schema is compiled here once into plain Python predicates that only
say whether a value is valid; only a value they refuse is put through jsonschema, for the
messages. The predicates implement the keywords our schemas use with jsonschema's own
semantics (its type rules, its equality for const, enum and uniqueItems, `re.search` for
pattern); a schema with any other keyword is not compiled, and everything it checks goes to
jsonschema as before. A value the predicates accept is one jsonschema accepts: a test checks
them against each other on every schema.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Check = Callable[[Any], bool]

# keywords that assert nothing (Draft202012Validator is made without a format checker)
ANNOTATIONS = frozenset(
    {"$schema", "$id", "$comment", "title", "description", "x-message", "default", "examples",
     "deprecated", "readOnly", "writeOnly", "format", "$defs"}
)


class Unsupported(Exception):
    """The schema uses a keyword these predicates do not implement."""


def compile_schema(schema: Any) -> Check:
    """A predicate for `schema` (references already inlined); Unsupported if it cannot."""
    if schema is True or schema == {}:
        return _always
    if schema is False:
        return _never
    if not isinstance(schema, dict):
        raise Unsupported(f"a schema that is {type(schema).__name__}")
    checks: list[Check] = []
    if _OBJECT.intersection(schema):
        checks.append(_object(schema))  # one pass over a mapping's items for all of them
    for keyword, value in schema.items():
        if keyword in ANNOTATIONS or keyword in _OBJECT or keyword in ("then", "else"):
            continue
        make = _KEYWORDS.get(keyword)
        if make is None:
            raise Unsupported(keyword)
        checks.append(make(value, schema))
    if not checks:
        return _always
    if len(checks) == 1:
        return checks[0]

    def every(v: Any) -> bool:
        for check in checks:  # noqa: SIM110 (a plain loop: all() of a generator costs more)
            if not check(v):
                return False
        return True

    return every


def _always(value: Any) -> bool:
    return True


def _never(value: Any) -> bool:
    return False


# -- types, as jsonschema's draft 2020-12 type checker has them ------------------------------


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _is_integer(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    return isinstance(v, int) or (isinstance(v, float) and v.is_integer())


TYPES: dict[str, Check] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": _is_number,
    "integer": _is_integer,
}


def _type(value: Any, schema: dict[str, Any]) -> Check:
    names = [value] if isinstance(value, str) else list(value)
    if any(n not in TYPES for n in names):
        raise Unsupported(f"type {value!r}")
    if len(names) == 1:
        return TYPES[names[0]]
    tests = [TYPES[n] for n in names]
    return lambda v: any(t(v) for t in tests)


# -- equality, as jsonschema's _utils.equal: 1 == 1.0, but True is not 1 ----------------------


def equal(one: Any, two: Any) -> bool:
    if one is two:
        return True
    if isinstance(one, str) or isinstance(two, str):
        return bool(one == two)
    if isinstance(one, list | tuple) and isinstance(two, list | tuple):
        return len(one) == len(two) and all(equal(a, b) for a, b in zip(one, two, strict=True))
    if isinstance(one, dict) and isinstance(two, dict):
        return one.keys() == two.keys() and all(equal(one[k], two[k]) for k in one)
    return bool(_unbool(one) == _unbool(two))


_TRUE, _FALSE = object(), object()


def _unbool(v: Any) -> Any:
    if v is True:
        return _TRUE
    if v is False:
        return _FALSE
    return v


def _const(value: Any, schema: dict[str, Any]) -> Check:
    return lambda v: equal(v, value)


def _enum(value: Any, schema: dict[str, Any]) -> Check:
    if not isinstance(value, list):
        raise Unsupported("enum that is not a list")
    strings = {e for e in value if isinstance(e, str)}
    if len(strings) == len(value):  # the common case: a set look-up
        return lambda v: isinstance(v, str) and v in strings
    return lambda v: any(equal(v, e) for e in value)


# -- strings, numbers ----------------------------------------------------------------------------


def _min_length(value: Any, schema: dict[str, Any]) -> Check:
    return lambda v: not isinstance(v, str) or len(v) >= value


def _max_length(value: Any, schema: dict[str, Any]) -> Check:
    return lambda v: not isinstance(v, str) or len(v) <= value


def _pattern(value: Any, schema: dict[str, Any]) -> Check:
    search = re.compile(value).search
    return lambda v: not isinstance(v, str) or search(v) is not None


def _minimum(value: Any, schema: dict[str, Any]) -> Check:
    return lambda v: not _is_number(v) or v >= value


def _maximum(value: Any, schema: dict[str, Any]) -> Check:
    return lambda v: not _is_number(v) or v <= value


def _exclusive_minimum(value: Any, schema: dict[str, Any]) -> Check:
    return lambda v: not _is_number(v) or v > value


def _exclusive_maximum(value: Any, schema: dict[str, Any]) -> Check:
    return lambda v: not _is_number(v) or v < value


# -- arrays ----------------------------------------------------------------------------------


def _items(value: Any, schema: dict[str, Any]) -> Check:
    if "prefixItems" in schema:
        raise Unsupported("prefixItems")
    item = compile_schema(value)

    def each(v: Any) -> bool:
        if isinstance(v, list):
            for x in v:
                if not item(x):
                    return False
        return True

    return each


def _min_items(value: Any, schema: dict[str, Any]) -> Check:
    return lambda v: not isinstance(v, list) or len(v) >= value


def _max_items(value: Any, schema: dict[str, Any]) -> Check:
    return lambda v: not isinstance(v, list) or len(v) <= value


def _unique_items(value: Any, schema: dict[str, Any]) -> Check:
    if not value:
        return _always

    def unique(v: Any) -> bool:
        if not isinstance(v, list):
            return True
        return not any(equal(a, b) for i, a in enumerate(v) for b in v[i + 1 :])

    return unique


# -- objects ---------------------------------------------------------------------------------


_OBJECT = frozenset(
    {"properties", "required", "additionalProperties", "propertyNames", "minProperties",
     "dependentRequired"}
)


def _object(schema: dict[str, Any]) -> Check:
    """properties, required, additionalProperties, propertyNames, minProperties and
    dependentRequired of one schema, in one pass over a mapping (each applies to mappings
    only)."""
    if "patternProperties" in schema:
        raise Unsupported("patternProperties")
    props = {name: compile_schema(sub) for name, sub in schema.get("properties", {}).items()}
    required = list(schema.get("required", ()))
    extra = compile_schema(schema.get("additionalProperties", True))
    others = None if extra is _always else extra
    names = compile_schema(schema["propertyNames"]) if "propertyNames" in schema else None
    least = schema.get("minProperties", 0)
    depends = [(k, list(v)) for k, v in schema.get("dependentRequired", {}).items()]

    def check(v: Any) -> bool:
        if not isinstance(v, dict):
            return True
        if len(v) < least:
            return False
        for name in required:
            if name not in v:
                return False
        for key, item in v.items():
            sub = props.get(key)
            if sub is not None:
                if not sub(item):
                    return False
            elif others is not None and not others(item):
                return False
            if names is not None and not names(key):
                return False
        for name, needs in depends:  # noqa: SIM110
            if name in v and any(n not in v for n in needs):
                return False
        return True

    return check


# -- combinations ------------------------------------------------------------------------------


def _all_of(value: Any, schema: dict[str, Any]) -> Check:
    subs = [compile_schema(s) for s in value]

    def every(v: Any) -> bool:
        for sub in subs:  # noqa: SIM110
            if not sub(v):
                return False
        return True

    return every


def _any_of(value: Any, schema: dict[str, Any]) -> Check:
    subs = [compile_schema(s) for s in value]
    return lambda v: any(s(v) for s in subs)


def _one_of(value: Any, schema: dict[str, Any]) -> Check:
    subs = [compile_schema(s) for s in value]
    return lambda v: sum(1 for s in subs if s(v)) == 1


def _not(value: Any, schema: dict[str, Any]) -> Check:
    sub = compile_schema(value)
    return lambda v: not sub(v)


def _if(value: Any, schema: dict[str, Any]) -> Check:
    test = compile_schema(value)
    then = compile_schema(schema["then"]) if "then" in schema else _always
    other = compile_schema(schema["else"]) if "else" in schema else _always
    return lambda v: then(v) if test(v) else other(v)


_KEYWORDS: dict[str, Callable[[Any, dict[str, Any]], Check]] = {
    "type": _type,
    "const": _const,
    "enum": _enum,
    "minLength": _min_length,
    "maxLength": _max_length,
    "pattern": _pattern,
    "minimum": _minimum,
    "maximum": _maximum,
    "exclusiveMinimum": _exclusive_minimum,
    "exclusiveMaximum": _exclusive_maximum,
    "items": _items,
    "minItems": _min_items,
    "maxItems": _max_items,
    "uniqueItems": _unique_items,
    "allOf": _all_of,
    "anyOf": _any_of,
    "oneOf": _one_of,
    "not": _not,
    "if": _if,
}
