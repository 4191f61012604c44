"""Load a storyboard file into plain data, remembering where every key and value stood.

We build the data ourselves (rather than `yaml.safe_load`) so that duplicate keys are refused,
alias expansion and nesting are bounded (YAML bombs), and every value's position is kept for
error messages. A storyboard without anchors, aliases and merge keys, as nearly all are, is
built in one pass over libyaml's parser events, which bounds nesting as it goes; one with
them is composed into PyYAML's node tree (after a pass that bounds nesting before libyaml's
composer, which recurses in C, can overflow its stack) and converted from it. Both give the
same data, positions and problems.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hailuo_pipe.errors import Problem
from hailuo_pipe.paths import PathRefused, read_regular
from hailuo_pipe.storyboard.model import Location

try:  # the C composer is several times faster on large storyboards
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

MAX_FILE_BYTES = 8 * 1024 * 1024
MAX_NODES = 1_000_000  # values after alias expansion
MAX_CHARS = 4 * MAX_FILE_BYTES  # characters of all scalars after alias expansion
MAX_DEPTH = 64
MERGE_TAG = "tag:yaml.org,2002:merge"

# A path into the document: keys and list indexes, e.g. ("scenes", 3, "prompt").
DocPath = tuple[str | int, ...]


@dataclass
class Document:
    """A loaded storyboard: its data, and the positions of its values and keys."""

    file: str
    data: Any
    # (line, column) of each value and key, made a Location when asked for (a large storyboard
    # has a hundred thousand of them, and few are ever asked for)
    values: dict[DocPath, tuple[int, int]] = field(default_factory=dict)
    keys: dict[DocPath, tuple[int, int]] = field(default_factory=dict)
    block_scalars: set[DocPath] = field(default_factory=set)
    # keys a `<<: *anchor` merge brought into a mapping -> (where the `<<` key stands, where
    # the anchor's pair stands): one anchor serves many scenes, so an error in a merged value
    # points at the scene's own `<<` line and says where the value came from
    merged: dict[DocPath, tuple[Location, Location]] = field(default_factory=dict)

    def merged_prefix(self, path: DocPath) -> DocPath | None:
        if self.merged:
            for end in range(len(path), 0, -1):
                if path[:end] in self.merged:
                    return path[:end]
        return None

    def locate(self, path: DocPath, *, key: bool = False) -> Location:
        """Where `path` stood; falls back to its closest parent that has a position. A value
        merged in by `<<: *anchor` stands where that `<<` key is."""
        p = tuple(path)
        if (prefix := self.merged_prefix(p)) is not None:
            return self.merged[prefix][0]
        table = self.keys if key else self.values
        while p:
            if p in table:
                return Location(*table[p])
            if p in self.values:
                return Location(*self.values[p])
            p = p[:-1]
        return Location(*self.values.get((), (1, 1)))

    def problem(self, path: DocPath, message: str, *, key: bool = False) -> Problem:
        loc = self.locate(path, key=key)
        prefix = self.merged_prefix(tuple(path))
        if prefix is not None:
            message = f"{self._owner(prefix)}{message} (merged by << from line "
            message += f"{self.merged[prefix][1].line})"
        return Problem(self.file, loc.line, loc.col, message)

    def _owner(self, path: DocPath) -> str:
        """`scene ID: ` for a path inside a scene with a plain id, else nothing."""
        if len(path) >= 2 and path[0] == "scenes" and isinstance(path[1], int):
            scenes = self.data.get("scenes") if isinstance(self.data, dict) else None
            if isinstance(scenes, list) and 0 <= path[1] < len(scenes):
                scene_id = scenes[path[1]].get("id") if isinstance(scenes[path[1]], dict) else None
                if isinstance(scene_id, str):
                    return f"scene {scene_id}: "
        return ""


class _TooBig(Exception):
    def __init__(self, node: yaml.Node, message: str) -> None:
        super().__init__(message)
        self.node = node


def _loc(node: yaml.Node) -> Location:
    return Location(*_pos(node))


def _pos(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Converter:
    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.count = 0
        self.chars = 0
        self.written: dict[int, set[int]] = {}
        self.scalars = yaml.constructor.SafeConstructor()
        self.problems: list[Problem] = []

    def convert(self, node: yaml.Node, path: DocPath, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise _TooBig(
                node, f"the document expands to more than {MAX_NODES:,} values (an alias bomb?)"
            )
        if isinstance(node, yaml.ScalarNode):
            # a long string behind many aliases is few values but gigabytes once serialised
            self.chars += len(node.value)
            if self.chars > MAX_CHARS:
                raise _TooBig(
                    node,
                    f"the document expands to more than {MAX_CHARS:,} characters (an alias bomb?)",
                )
        if depth > MAX_DEPTH:
            raise _TooBig(node, f"the document nests deeper than {MAX_DEPTH} levels")
        # Only the first occurrence of an aliased node records positions (the anchor's).
        self.doc.values.setdefault(path, _pos(node))
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        if node.style in ("|", ">"):
            self.doc.block_scalars.add(path)
        return self.scalars.construct_object(node)

    def _mapping(self, node: yaml.MappingNode, path: DocPath, depth: int) -> dict[str, Any]:
        # the keys written in this mapping, before merging rewrites it (aliases revisit it)
        written = self.written.setdefault(
            id(node), {id(k) for k, _ in node.value if k.tag != MERGE_TAG}
        )
        merge_at = next((_loc(k) for k, _ in node.value if k.tag == MERGE_TAG), None)
        # applies `<<: *anchor` merge keys: merged pairs come first, the earlier mapping's
        # last, and the mapping's own keys after them, so the last pair of a key wins
        self.scalars.flatten_mapping(node)
        out: dict[str, Any] = {}
        own: set[str] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.problems.append(self._at(key_node, "a key must be a plain string"))
                continue
            key = self.scalars.construct_object(key_node)
            if not isinstance(key, str):
                key = str(key) if not isinstance(key, bool) else str(key).lower()
            if id(key_node) in written:
                if key in own:  # written twice in the file: a mistake, not a merge
                    self.problems.append(self._at(key_node, f"duplicate key {key!r}"))
                    continue
                own.add(key)
                self.doc.merged.pop((*path, key), None)  # the mapping's own pair wins
            elif merge_at is not None:
                self.doc.merged[(*path, key)] = (merge_at, _loc(key_node))
            self.doc.keys[(*path, key)] = _pos(key_node)
            out[key] = self.convert(value_node, (*path, key), depth + 1)
        return out

    def _at(self, node: yaml.Node, message: str) -> Problem:
        loc = _loc(node)
        return Problem(self.doc.file, loc.line, loc.col, message)


def _yaml_problem(file: str, err: yaml.YAMLError) -> Problem:
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    what = getattr(err, "problem", None) or str(err)
    context = getattr(err, "context", None)
    start = getattr(err, "context_mark", None)
    if context and start is not None and start is not mark:
        context += f" that starts at line {start.line + 1}, column {start.column + 1}"
    message = f"invalid YAML: {what}" + (f" ({context})" if context else "")
    if "\\t" in what or "'\\t'" in what or "tab" in what.lower():
        message += "; indent with spaces, not tabs"
    return Problem(file, line, col, message)


@dataclass(frozen=True)
class _Deep:
    line: int
    col: int

    def located(self, file: str) -> Problem:
        return Problem(
            file, self.line, self.col, f"the document nests deeper than {MAX_DEPTH} levels"
        )


def _too_deep(text: str) -> _Deep | None:
    """Where the document first nests deeper than MAX_DEPTH, found from the parser's events
    before anything is composed: libyaml's composer recurses in C, and a few thousand `[`
    would overflow its stack."""
    depth = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH + 1:  # the converter counts the root collection as 0
                return _Deep(event.start_mark.line + 1, event.start_mark.column + 1)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    return None


def load_text(text: str, file: str) -> tuple[Document, list[Problem]]:
    """Parse storyboard text; returns the document and any problems (never raises for bad input)."""
    doc = Document(file=file, data=None)
    if "\x00" in text:
        return doc, [Problem(file, 1, 1, "this is not a text file (it contains NUL bytes)")]
    from hailuo_pipe.storyboard.yamlevents import EventBuilder  # it builds on this module

    built = EventBuilder(doc).build(text)
    if built is not None:
        return doc, built
    doc = Document(file=file, data=None)  # anchors, aliases or merge keys: the node tree's way
    return _load_nodes(text, doc)


def _load_nodes(text: str, doc: Document) -> tuple[Document, list[Problem]]:
    file = doc.file
    try:
        too_deep = _too_deep(text)
        if too_deep is not None:
            return doc, [too_deep.located(file)]
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.YAMLError as err:
        return doc, [_yaml_problem(file, err)]
    except RecursionError:
        return doc, [Problem(file, 1, 1, f"the document nests deeper than {MAX_DEPTH} levels")]
    if not nodes or nodes[0] is None:
        return doc, [Problem(file, 1, 1, "the storyboard is empty")]
    if len(nodes) > 1:
        second = nodes[1]
        line = second.start_mark.line + 1 if second is not None else 1
        return doc, [
            Problem(file, line, 1, "a storyboard file holds one YAML document, not several")
        ]
    converter = _Converter(doc)
    try:
        doc.data = converter.convert(nodes[0], (), 0)
    except _TooBig as err:
        loc = _loc(err.node)
        return doc, [Problem(file, loc.line, loc.col, str(err))]
    except (yaml.YAMLError, ValueError, TypeError) as err:  # e.g. an impossible timestamp
        return doc, [Problem(file, 1, 1, f"invalid YAML value: {err}")]
    return doc, converter.problems


def load(path: Path, display: str | None = None) -> tuple[Document, list[Problem]]:
    """Read and parse a storyboard file; unreadable files are problems, not exceptions."""
    file = display or str(path)
    try:
        raw = read_regular(path, MAX_FILE_BYTES, "storyboard")
    except PathRefused as err:
        return Document(file, None), [Problem(file, 1, 1, err.reason)]
    except FileNotFoundError:
        return Document(file, None), [Problem(file, 1, 1, "no such file")]
    except OSError as err:
        return Document(file, None), [Problem(file, 1, 1, f"cannot read the file: {err.strerror}")]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        return Document(file, None), [Problem(file, line, 1, "the file is not valid UTF-8 text")]
    return load_text(text, file)
