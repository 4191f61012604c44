"""JSON Schema validation with messages a person understands.

The schemas live in `schemas/` at the top of the repository (installed as `hailuo_pipe/_schemas`).
A subschema may carry `"x-message"`, which replaces jsonschema's own wording for errors raised
by it; the rest of the wording is translated here.
"""

from __future__ import annotations

import atexit
import contextlib
import difflib
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from hailuo_pipe.errors import Problem
from hailuo_pipe.paths import PathRefused, read_regular
from hailuo_pipe.state.lockfile import atomic_write
from hailuo_pipe.storyboard.yamldoc import DocPath, Document

# jsonschema is imported when something is checked: a rerun of a storyboard whose document
# and requests were all found valid before (see SchemaMemo) never loads it
if TYPE_CHECKING:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError


_T = TypeVar("_T")
MEMO_BYTES = 64 * 1024 * 1024  # .checked-requests: 65 bytes a checked request


def schema_dir() -> Path:
    package = Path(__file__).parents[1]
    installed = package / "_schemas"
    return installed if installed.is_dir() else package.parent / "schemas"


@cache
def load_schema(name: str) -> dict[str, Any]:
    """`storyboard` or `providers/NAME`."""
    path = schema_dir() / (f"{name}.schema.json" if name == "storyboard" else f"{name}.json")
    schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return schema


@cache
def validator(name: str) -> Draft202012Validator:
    from jsonschema import Draft202012Validator

    schema = load_schema(name)  # checked against the metaschema by the tests, not per run
    # Resolving "$ref" on every use is a large share of jsonschema's time on a 1,000-scene
    # storyboard; our schemas are not recursive, so the references are inlined once.
    return Draft202012Validator(_inline_refs(schema, schema))


def _inline_refs(node: Any, root: dict[str, Any], depth: int = 0) -> Any:
    if depth > 32:
        raise ValueError("schema references nest too deep (a recursive schema?)")
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            target: Any = root
            for part in ref[2:].split("/"):
                target = target[part]
            rest = {k: v for k, v in node.items() if k != "$ref"}
            return {**_inline_refs(target, root, depth + 1), **rest}
        return {k: _inline_refs(v, root, depth) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline_refs(v, root, depth) for v in node]
    return node


def _leaves(error: ValidationError) -> Iterator[ValidationError]:
    """The most specific errors: for oneOf/anyOf whose branches all fail, prefer x-message."""
    if error.validator in ("oneOf", "anyOf") and not error.schema.get("x-message"):
        # the branch that got furthest (deepest path) is the one the author meant
        best = max(error.context or [], key=lambda e: len(e.absolute_path), default=None)
        if best is not None:
            yield from _leaves(best)
            return
    yield error


def _name(path: DocPath, data: Any = None) -> str:
    """How a person calls the thing at `path`: its key, or "scene 'dawn'" for a scene."""
    if len(path) >= 2 and path[-2] == "scenes" and isinstance(path[-1], int):
        scenes = data.get("scenes") if isinstance(data, dict) else None
        item = scenes[path[-1]] if isinstance(scenes, list) else None
        scene_id = item.get("id") if isinstance(item, dict) else None
        return f"scene {scene_id!r}" if isinstance(scene_id, str) else f"scene #{path[-1] + 1}"
    parts = [p for p in path if isinstance(p, str)]
    return parts[-1] if parts else "the storyboard"


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    kind = {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
    }.get(type(value), type(value).__name__)
    shown = json.dumps(value, default=str)
    return (
        f"{kind} ({shown[:40]}{'…' if len(shown) > 40 else ''})"
        if kind not in ("a list", "a mapping")
        else kind
    )


_TYPE_WORDS = {
    "integer": "a whole number",
    "number": "a number",
    "string": "a string",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
}


def _extras(error: ValidationError) -> list[Any]:
    """The unknown keys an additionalProperties error is about (one problem each), else [None]."""
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = error.schema.get("properties", {})
        extra = sorted((k for k in error.instance if k not in allowed), key=str)
        if extra:
            return extra
    return [None]


def message(
    error: ValidationError, path: DocPath, data: Any = None, extra: Any = None
) -> tuple[str, DocPath, bool]:
    """A person's message for one error, the path to point at, and whether that is a key.
    `extra` picks which unknown key of an additionalProperties error is meant."""
    custom = error.schema.get("x-message") if isinstance(error.schema, dict) else None
    name = _name(path, data)
    v, inst = error.validator, error.instance
    if v == "additionalProperties" and isinstance(inst, dict):
        allowed = sorted(error.schema.get("properties", {}))
        key = extra if extra is not None else sorted(k for k in inst if k not in allowed)[0]
        guess = difflib.get_close_matches(key, allowed, n=1)
        hint = f"; did you mean {guess[0]!r}?" if guess else f"; allowed: {', '.join(allowed)}"
        where = f" in {name}" if path else ""
        return f"unknown key {key!r}{where}{hint}", (*path, key), True
    if v == "required":
        missing = (
            error.message.split("'")[1] if "'" in error.message else str(error.validator_value)
        )
        return f"{name} is missing the required key {missing!r}", path, False
    if custom:
        if not path or custom.startswith(name):
            return custom, path, False
        return f"{name} {custom}" if custom.startswith("must") else f"{name}: {custom}", path, False
    if v == "type":
        want = error.validator_value
        wants = [want] if isinstance(want, str) else list(want)
        words = " or ".join(_TYPE_WORDS.get(w, w) for w in wants)
        return f"{name} must be {words}, not {_describe(inst)}", path, False
    if v == "enum":
        options = ", ".join(json.dumps(o) for o in error.validator_value)
        return f"{name} must be one of {options}, not {json.dumps(inst, default=str)}", path, False
    if v == "const":
        return f"{name} must be {json.dumps(error.validator_value)}", path, False
    if v == "maxLength":
        return (
            (f"{name} is {len(inst)} characters long; at most {error.validator_value} are allowed"),
            path,
            False,
        )
    if v == "minLength":
        return f"{name} must not be empty", path, False
    if v in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        return f"{name} is {inst}: {error.message.split(' is ', 1)[-1]}", path, False
    if v == "minItems":
        return f"{name} needs at least {error.validator_value} item(s)", path, False
    return f"{name}: {error.message}", path, False


def validate_document(doc: Document) -> list[Problem]:
    """Check a loaded storyboard against storyboard.schema.json; every problem located."""
    problems = []
    for top in validator("storyboard").iter_errors(doc.data):
        for err in _leaves(top):
            path: DocPath = tuple(err.absolute_path)
            for extra in _extras(err):
                text, at, is_key = message(err, path, doc.data, extra)
                problems.append(doc.problem(at, text, key=is_key))
    return list(dict.fromkeys(problems))  # a subschema failing twice reads as one problem


class SchemaMemo:
    """Documents and provider requests already found valid, remembered between runs in a file
    beside a storyboard's renders, so rerunning a large unchanged storyboard does not put it
    through jsonschema again (a third of a millisecond per request, as long again for the
    document, and loading jsonschema). A digest covers the schema too: a changed schema checks
    everything anew. The file only ever speeds things up: unreadable or unwritable, it is
    ignored."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._known: set[str] = set()
        self._used: set[str] = set()
        if path is not None:
            # ValueError: a path no file can have (a NUL in a name not yet checked by the schema)
            # PathRefused: a FIFO or a link to /dev/zero there would hang or fill memory
            with contextlib.suppress(OSError, UnicodeDecodeError, ValueError, PathRefused):
                self._known = set(read_regular(path, MEMO_BYTES, "memo").decode().split())

    def document_problems(self, doc: Document) -> list[Problem]:
        return self._checked("storyboard", doc.data, lambda: validate_document(doc))

    def errors(self, provider: str, body: Any) -> list[tuple[DocPath, str]]:
        return self._checked(f"providers/{provider}", body, lambda: request_errors(provider, body))

    def _checked(self, schema: str, data: Any, check: Callable[[], list[_T]]) -> list[_T]:
        try:
            text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        except (TypeError, ValueError):  # e.g. a YAML date: not worth remembering
            return check()
        digest = hashlib.sha256(f"{_schema_digest(schema)}\n{text}".encode()).hexdigest()
        if digest in self._known:
            self._used.add(digest)
            return []
        # jsonschema only for what the fast predicates refuse: it says why
        found = [] if valid_fast(schema, data) else check()
        if not found:
            self._used.add(digest)
        return found

    def save(self) -> None:
        """Keep the digests this run used (so the file never outgrows the storyboard), if the
        storyboard's render folder exists: validating never creates folders. When it does not
        exist yet, the memo is written as the process exits if a render made the folder
        meanwhile, so the first rerun after a first render finds it."""
        if self.path is None or self._used == self._known:
            return
        if not self.path.parent.is_dir():
            _PENDING[self.path] = self
            return
        _PENDING.pop(self.path, None)
        with contextlib.suppress(OSError, ValueError):
            atomic_write(self.path, "".join(f"{d}\n" for d in sorted(self._used)).encode())


_PENDING: dict[Path, SchemaMemo] = {}  # memos whose folder did not exist when they were saved


@atexit.register
def _save_pending() -> None:
    for memo in list(_PENDING.values()):
        folder = memo.path.parent if memo.path is not None else None
        # made by a render, which refuses a render folder that is a symlink (out of the project)
        if folder is not None and folder.is_dir() and not (
            folder.is_symlink() or folder.parent.is_symlink()
        ):
            memo.save()


@cache
def fast_check(name: str) -> Callable[[Any], bool] | None:
    """The compiled yes/no predicate of a schema (fastcheck.py), None when it cannot be."""
    from hailuo_pipe.storyboard.fastcheck import Unsupported, compile_schema

    schema = load_schema(name)
    try:
        return compile_schema(_inline_refs(schema, schema))
    except (Unsupported, ValueError, KeyError, TypeError, re.error):
        return None


def valid_fast(name: str, data: Any) -> bool:
    """True only when `data` is valid against the schema; False also means "ask jsonschema"."""
    test = fast_check(name)
    if test is None:
        return False
    try:
        return test(data)
    except (TypeError, ValueError, RecursionError):  # a value no JSON has: jsonschema says
        return False


@cache
def _schema_digest(name: str) -> str:
    text = json.dumps(load_schema(name), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def request_errors(provider: str, body: Any) -> list[tuple[DocPath, str]]:
    """Check a provider request body; returns (path inside the body, message) pairs."""
    out = []
    for top in validator(f"providers/{provider}").iter_errors(body):
        for err in _leaves(top):
            path: DocPath = tuple(err.absolute_path)
            for extra in _extras(err):
                text, at, _ = message(err, path, None, extra)
                out.append((at, text))
    return out
