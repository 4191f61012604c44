"""The one-pass way of `yamldoc`: a storyboard built straight from libyaml's parser events.

Nearly every storyboard has no anchors, aliases or merge keys; for those, building the data
from the events, bounding nesting as it goes and keeping positions as plain tuples, gives the
same data, positions and problems as composing PyYAML's node tree and converting it, in a
fraction of the time. Anything else makes `build` return None and `yamldoc` takes the node
tree's way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml

from hailuo_pipe.errors import Problem
from hailuo_pipe.storyboard import yamldoc  # its limits, read when used (tests lower them)
from hailuo_pipe.storyboard.yamldoc import (
    MERGE_TAG,
    DocPath,
    Document,
    _Deep,
    _yaml_problem,
)

_STR = "tag:yaml.org,2002:str"
_VALUE = "tag:yaml.org,2002:value"
_IMPLICIT = yamldoc._Loader.yaml_implicit_resolvers
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


class EventBuilder:
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
        loader = yamldoc._Loader(text)
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
        if self.depth > yamldoc.MAX_DEPTH + 1:  # the converter counts the root collection as 0
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
        if self.count > yamldoc.MAX_NODES:
            raise self._fatal(
                event,
                f"the document expands to more than {yamldoc.MAX_NODES:,} values (an alias bomb?)",
            )
        if kind is _Scalar:
            self.chars += len(event.value)
            if self.chars > yamldoc.MAX_CHARS:
                raise self._fatal(
                    event,
                    f"the document expands to more than {yamldoc.MAX_CHARS:,} characters "
                    "(an alias bomb?)",
                )
        if len(path) > yamldoc.MAX_DEPTH:
            raise self._fatal(event, f"the document nests deeper than {yamldoc.MAX_DEPTH} levels")
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
