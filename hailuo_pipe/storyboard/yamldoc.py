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

from collections.abc import Callable
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

    def locate(self, path: DocPath, *, key: bool = False) -> Location:
        """Where `path` stood; falls back to its closest parent that has a position."""
        table = self.keys if key else self.values
        p = tuple(path)
        while p:
            if p in table:
                return Location(*table[p])
            if p in self.values:
                return Location(*self.values[p])
            p = p[:-1]
        return Location(*self.values.get((), (1, 1)))

    def problem(self, path: DocPath, message: str, *, key: bool = False) -> Problem:
        loc = self.locate(path, key=key)
        return Problem(self.file, loc.line, loc.col, message)


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
    built = _EventBuilder(doc).build(text)
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


_STR = "tag:yaml.org,2002:str"
_VALUE = "tag:yaml.org,2002:value"
_IMPLICIT = _Loader.yaml_implicit_resolvers
_WILDCARD = _IMPLICIT.get(None, [])


def _resolve(value: str, implicit: tuple[bool, bool]) -> str:
    """The tag PyYAML's resolver gives an untagged scalar (yaml.resolver.Resolver.resolve)."""
    if implicit[0]:
        for tag, regexp in _IMPLICIT.get(value[:1], []) + _WILDCARD:
            if regexp.match(value):
                return str(tag)
    return _STR


class _TooDeep(Exception):
    def __init__(self, deep: _Deep) -> None:
        self.deep = deep


class _NeedsNodes(Exception):
    """An anchor, an alias or a merge key: the document is built from PyYAML's node tree."""


class _Fatal(Exception):
    """A problem that ends conversion (as _TooBig or a constructor error does there)."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem


_Scalar, _Alias = yaml.ScalarEvent, yaml.AliasEvent
_MapStart, _MapEnd = yaml.MappingStartEvent, yaml.MappingEndEvent
_SeqStart, _SeqEnd = yaml.SequenceStartEvent, yaml.SequenceEndEvent
_STARTS, _ENDS = (_MapStart, _SeqStart), (_MapEnd, _SeqEnd)


class _EventBuilder:
    """One pass over parser events: data, positions and problems as `_Converter` makes them.

    Problems come in the order the node tree's way finds them: a YAML error or too deep a
    nesting anywhere before the end wins over everything, then a second document, then the
    first problem that ends conversion, else the problems found along the way."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.count = 0
        self.chars = 0
        self.depth = 0  # collections open, as `_too_deep` counts them
        self.scalars = yaml.constructor.SafeConstructor()
        self.problems: list[Problem] = []
        self.get: Callable[[], yaml.Event] = lambda: yaml.StreamEndEvent()

    def build(self, text: str) -> list[Problem] | None:
        """The problems, or None when the document needs the node tree's way."""
        file = self.doc.file
        loader = _Loader(text)
        self.get = get = loader.get_event
        documents, second, fatal = 0, None, None
        try:
            while True:
                event = get()
                kind = type(event)
                if kind is yaml.StreamEndEvent or event is None:
                    break
                if kind is yaml.DocumentStartEvent:
                    documents += 1
                    continue
                if kind is yaml.StreamStartEvent or kind is yaml.DocumentEndEvent:
                    continue
                if documents > 1 or fatal is not None:
                    # nothing more is converted, but the rest must still parse and nest
                    if documents > 1 and second is None:
                        second = event.start_mark.line + 1
                    if kind in _ENDS:
                        self.depth -= 1  # one the fatal problem left open
                    else:
                        self._skip(event)
                    continue
                try:
                    self.doc.data = self._value(event, ())
                except _Fatal as err:
                    fatal = err.problem
        except _TooDeep as err:
            return self._nothing([err.deep.located(file)])
        except yaml.YAMLError as err:
            return self._nothing([_yaml_problem(file, err)])
        except _NeedsNodes:
            return None
        finally:
            loader.dispose()
        if documents == 0:
            return [Problem(file, 1, 1, "the storyboard is empty")]
        if second is not None:
            several = "a storyboard file holds one YAML document, not several"
            return self._nothing([Problem(file, second, 1, several)])
        return [fatal] if fatal is not None else self.problems

    def _nothing(self, problems: list[Problem]) -> list[Problem]:
        """A problem found before the node tree's way converts anything: no data, no positions."""
        self.doc.data = None
        self.doc.values.clear()
        self.doc.keys.clear()
        self.doc.block_scalars.clear()
        return problems

    def _open(self, event: yaml.Event) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH + 1:  # the converter counts the root collection as 0
            raise _TooDeep(_Deep(event.start_mark.line + 1, event.start_mark.column + 1))

    def _skip(self, event: yaml.Event) -> None:
        """Consume the rest of a node nobody converts, still bounding its nesting."""
        if type(event) is _Alias or event.anchor is not None:
            raise _NeedsNodes
        if type(event) not in _STARTS:
            return
        self._open(event)
        level = 1
        while level:
            inner = self.get()
            kind = type(inner)
            if kind in _ENDS:
                self.depth -= 1
                level -= 1
                continue
            if kind is _Alias or inner.anchor is not None:
                raise _NeedsNodes
            if kind in _STARTS:
                self._open(inner)
                level += 1

    def _fatal(self, event: yaml.Event, message: str) -> _Fatal:
        mark = event.start_mark
        return _Fatal(Problem(self.doc.file, mark.line + 1, mark.column + 1, message))

    def _value(self, event: yaml.Event, path: DocPath) -> Any:
        kind = type(event)
        if kind is _Alias or event.anchor is not None:
            raise _NeedsNodes
        if kind is not _Scalar:
            # bounded first, as `_too_deep` bounds every collection before anything else
            # (a _Fatal leaves it open: `build` closes it as it reads on)
            self._open(event)
        self.count += 1
        if self.count > MAX_NODES:
            raise self._fatal(
                event, f"the document expands to more than {MAX_NODES:,} values (an alias bomb?)"
            )
        if kind is _Scalar:
            self.chars += len(event.value)
            if self.chars > MAX_CHARS:
                raise self._fatal(
                    event,
                    f"the document expands to more than {MAX_CHARS:,} characters (an alias bomb?)",
                )
        if len(path) > MAX_DEPTH:
            raise self._fatal(event, f"the document nests deeper than {MAX_DEPTH} levels")
        mark = event.start_mark
        self.doc.values.setdefault(path, (mark.line + 1, mark.column + 1))
        if kind is _Scalar:
            if event.style in ("|", ">"):
                self.doc.block_scalars.add(path)
            return self._scalar(event)
        value: Any
        if kind is _MapStart:
            value = self._mapping(path)
        else:
            value = []
            get = self.get
            while type(inner := get()) is not _SeqEnd:
                value.append(self._value(inner, (*path, len(value))))
        self.depth -= 1
        return value

    def _scalar(self, event: yaml.ScalarEvent) -> Any:
        tag = event.tag
        if tag is None or tag == "!":
            tag = _resolve(event.value, event.implicit)
        if tag == _STR:
            return event.value
        node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
        try:
            return self.scalars.construct_object(node)
        except (yaml.YAMLError, ValueError, TypeError) as err:  # e.g. an impossible timestamp
            raise _Fatal(Problem(self.doc.file, 1, 1, f"invalid YAML value: {err}")) from None

    def _mapping(self, path: DocPath) -> dict[str, Any]:
        out: dict[str, Any] = {}
        get, keys = self.get, self.doc.keys
        while True:
            key_event = get()
            kind = type(key_event)
            if kind is _MapEnd:
                return out
            if kind is _Alias or key_event.anchor is not None:
                raise _NeedsNodes
            if kind is not _Scalar:
                self.problems.append(self._at(key_event, "a key must be a plain string"))
                self._skip(key_event)
                self._skip(get())
                continue
            key: Any = key_event.value
            tag = key_event.tag
            if tag is None or tag == "!":
                tag = _resolve(key, key_event.implicit)
            if tag == MERGE_TAG:
                raise _NeedsNodes
            if tag != _STR and tag != _VALUE:  # `=`: flatten_mapping makes it a plain string
                key = self._scalar(key_event)
                if not isinstance(key, str):
                    key = str(key) if not isinstance(key, bool) else str(key).lower()
            value_event = get()
            if key in out:  # written twice in the file: a mistake, not a merge
                self.problems.append(self._at(key_event, f"duplicate key {key!r}"))
                self._skip(value_event)
                continue
            mark = key_event.start_mark
            sub = (*path, key)
            keys[sub] = (mark.line + 1, mark.column + 1)
            out[key] = self._value(value_event, sub)

    def _at(self, event: yaml.Event, message: str) -> Problem:
        mark = event.start_mark
        return Problem(self.doc.file, mark.line + 1, mark.column + 1, message)


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
