"""Prompt templates: Jinja2 in a sandbox, strict about undefined variables, bounded in work.

A storyboard comes from a file someone else may have written, so templates cannot reach Python
internals (the sandbox), files outside the `templates/` folder beside the spec (the loader), or
the environment, and cannot make the program loop or allocate without bound.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.loaders import split_template_path
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEnvironment
from jinja2.utils import generate_lorem_ipsum

MAX_OUTPUT = 20_000  # characters: far above the 2000 a prompt may have, low enough to stop bombs
MAX_ITERATIONS = 100_000  # loop steps in one template
MAX_SEQUENCE = 100_000  # characters or items of any one string or list a template holds or builds
MAX_WORK = 2_000_000  # characters and items built or scanned by filters and calls, in one render
MAX_INT_BITS = 100_000  # size of any number a template computes
MAX_LIPSUM = 20  # paragraphs: lipsum() is slow, and no prompt needs more
MAX_SNIPPET_BYTES = 1024 * 1024


class TemplateProblem(Exception):
    """A template failed; `line` is 1-based within the template text (None when unknown)."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


class _Budget:
    """The work one render may do; every bound below charges it."""

    def __init__(self) -> None:
        self.steps = 0
        self.work = 0

    def step(self) -> None:
        self.steps += 1
        if self.steps > MAX_ITERATIONS:
            raise TemplateProblem(f"the template loops more than {MAX_ITERATIONS:,} times")

    def spend(self, amount: int) -> None:
        self.work += amount
        if self.work > MAX_WORK:
            raise TemplateProblem(f"the template does more than {MAX_WORK:,} steps of work")


# the budget of the render running in this thread (None while Jinja folds constants)
_budget: ContextVar[_Budget | None] = ContextVar("template_budget", default=None)


def _spend(amount: int) -> None:
    budget = _budget.get()
    if budget is not None:
        budget.spend(amount)


def _size(value: Any) -> int:
    """Characters or items in a value, nested ones included: what printing it would build."""
    if isinstance(value, str | bytes):
        return len(value)
    if isinstance(value, list | tuple | set | frozenset):
        return len(value) + sum(
            _size(v) for v in value if isinstance(v, str | bytes | list | tuple)
        )
    if isinstance(value, dict):
        return len(value) + sum(_size(v) for v in value.values())
    return 0


def _bounded(value: Any) -> Any:
    """`value`, once it is known not to be too large to keep, print or compute with."""
    size = _size(value)
    if size > MAX_SEQUENCE:
        raise TemplateProblem("the template builds too long a string or list")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise TemplateProblem("the template computes too large a number")
    _spend(size)
    return value


_WIDTHS = re.compile(r"%[-#0 +]*(\d+)|%[-#0 +]*\d*\.(\d+)|\{[^{}]*:[^{}]*?(\d+)[^{}]*\}")


def _check_format(fmt: Any) -> None:
    """Refuse a printf or str.format pattern that pads to a huge width before we run it."""
    if isinstance(fmt, str):
        for groups in _WIDTHS.findall(fmt):
            if any(g and int(g) > MAX_SEQUENCE for g in groups):
                raise TemplateProblem("the template formats to too wide a field")


def _check_numbers(values: Iterable[Any]) -> None:
    for value in values:
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_SEQUENCE:
            raise TemplateProblem("the template passes too large a number to a function")


def _joined_size(separator: str, items: list[Any]) -> int:
    return len(separator) * max(len(items) - 1, 0) + sum(_size(i) or 8 for i in items)


def _check_growth(name: str, text: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Estimate what a string operation that multiplies sizes would build, before running it.

    Returns the arguments to use (an iterator to join is read into a list here)."""
    if not isinstance(text, str):
        return args
    estimate = len(text)
    if name == "join" and args:
        items = list(args[0])
        args = (items, *args[1:])
        estimate = _joined_size(text, items)
    elif name == "replace" and len(args) >= 2 and isinstance(args[0], str):
        hits = text.count(args[0]) if args[0] else len(text) + 1
        estimate += hits * _size(args[1])
    elif name in ("format", "format_map", "%"):
        _check_format(text)
    elif name == "expandtabs" and args and isinstance(args[0], int):
        estimate += text.count("\t") * args[0]
    if estimate > MAX_SEQUENCE:
        raise TemplateProblem("the template builds too long a string or list")
    return args


def _bounded_filter(name: str, f: Callable[..., Any]) -> Callable[..., Any]:
    """A built-in filter that checks what it is given and what it returns."""
    passed = 1 if getattr(f, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(f)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        value, extra = args[passed], args[passed + 1 :]
        _check_numbers((*extra, *kwargs.values()))
        _spend(_size(value))
        if name == "join":  # value|join(d): d between the items
            items = list(value)
            if _joined_size(str(extra[0]) if extra else "", items) > MAX_SEQUENCE:
                raise TemplateProblem("the template builds too long a string or list")
            args = (*args[:passed], items, *extra)
        elif name == "replace" and isinstance(value, str):
            _check_growth("replace", value, extra)
        elif name == "format":
            _check_format(value)
        elif name in ("indent", "wordwrap") and isinstance(value, str):
            pad = extra[0] if extra else kwargs.get("width", 4)
            pad_size = pad if isinstance(pad, int) else _size(pad)
            wrap = kwargs.get("wrapstring") or (extra[2] if len(extra) > 2 else "\n")
            lines = value.count("\n") + 1 if name == "indent" else len(value) // max(pad_size, 1)
            extra_size = pad_size if name == "indent" else _size(wrap)
            if len(value) + (lines + 1) * extra_size > MAX_SEQUENCE:
                raise TemplateProblem("the template builds too long a string or list")
        return _bounded(f(*args, **kwargs))

    return bounded


def _range(*args: int) -> Iterable[int]:
    numbers = range(*args)
    if len(numbers) > MAX_ITERATIONS:
        raise TemplateProblem(f"the template loops more than {MAX_ITERATIONS:,} times")
    return _Counted(numbers)


class _Counted:
    """A range whose every step is charged to the render's budget, however it is consumed."""

    def __init__(self, numbers: range) -> None:
        self.numbers = numbers

    def __len__(self) -> int:
        return len(self.numbers)

    def __iter__(self) -> Iterator[int]:
        budget = _budget.get()
        for n in self.numbers:
            if budget is not None:
                budget.step()
            yield n


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    if n > MAX_LIPSUM or max > 10 * MAX_LIPSUM * 5:
        raise TemplateProblem(f"lipsum() makes at most {MAX_LIPSUM} paragraphs here")
    return str(generate_lorem_ipsum(n, html, min, max))


class _Generator(CodeGenerator):
    """Compiles templates so that every `~` and every for loop is bounded by the sandbox."""

    _loop_source: nodes.Node | None = None

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        if node.recursive:
            self.fail("recursive loops are not allowed in a prompt template", node.lineno)
        self._loop_source = node.iter
        super().visit_For(node, frame)

    def visit(self, node: nodes.Node, *args: Any, **kwargs: Any) -> Any:
        if node is self._loop_source:  # `for x in ITER`: ITER goes through bounded_iter
            self._loop_source = None
            self.write("environment.bounded_iter(")
            super().visit(node, *args, **kwargs)
            self.write(")")
            return None
        return super().visit(node, *args, **kwargs)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.bounded_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


def _check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse arithmetic whose result would be too large, before computing it."""
    too_long = TemplateProblem("the template builds too long a string or list")
    too_large = TemplateProblem("the template computes too large a number")
    ints = isinstance(left, int) and isinstance(right, int)
    if operator == "**":
        if isinstance(right, int | float) and abs(right) > 64:
            raise TemplateProblem("the template raises a number to too large a power")
        if ints and right > 0 and left.bit_length() * right > MAX_INT_BITS:
            raise too_large
    elif operator == "*":
        for seq, n in ((left, right), (right, left)):
            if (
                isinstance(seq, str | list | tuple)
                and isinstance(n, int)
                and _size(seq) * n > MAX_SEQUENCE
            ):
                raise too_long
        if ints and left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise too_large
    elif operator == "+" and _size(left) + _size(right) > MAX_SEQUENCE:
        raise too_long
    elif operator == "%":
        _check_format(left)


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox (no Python internals, no mutation), plus bounds on work and
    size: every loop, `~`, arithmetic operator, call and filter is charged or checked, so a
    template cannot make validate loop or allocate without bound."""

    code_generator_class = _Generator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.filters = {name: _bounded_filter(name, f) for name, f in self.filters.items()}
        self.globals.update(range=_range, lipsum=_lipsum)

    def call_binop(
        self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any
    ) -> Any:
        _check_binop(operator, left, right)
        return _bounded(SandboxedEnvironment.call_binop(self, context, operator, left, right))

    def call(
        __self,  # Jinja's own signature: keyword arguments may be named `self`
        __context: jinja2.runtime.Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        if __obj is not _range:
            _check_numbers((*args, *kwargs.values()))
        method = getattr(__obj, "__wrapped__", __obj)  # the sandbox wraps str.format
        owner = getattr(method, "__self__", None)
        if isinstance(owner, str | list | tuple | dict):
            _spend(_size(owner))
            args = _check_growth(getattr(method, "__name__", ""), owner, args)
        return _bounded(super().call(__context, __obj, *args, **kwargs))

    def bounded_iter(self, iterable: Any) -> Iterator[Any]:
        if isinstance(iterable, _Counted):  # charged per step already
            yield from iterable
            return
        budget = _budget.get()
        for item in iterable:
            if budget is not None:
                budget.step()
            yield item

    def bounded_concat(self, parts: tuple[Any, ...]) -> str:
        texts = [p if isinstance(p, str) else str(p) for p in parts]
        if sum(map(len, texts)) > MAX_SEQUENCE:
            raise TemplateProblem("the template builds too long a string or list")
        return _bounded("".join(texts))


class _FolderLoader(jinja2.FileSystemLoader):
    """Snippets from the templates folder and nothing else: a symlink in it that leads out (a
    cloned repository can carry one) is refused before anything is read, and so is a file
    too large to be a snippet. "Out" is out of `root`, the project folder: checked against the
    templates folder's own real path, a `templates -> /proc/self` link would let every file
    under its target in."""

    def __init__(self, searchpath: str, root: str) -> None:
        super().__init__(searchpath)
        self.root = os.path.realpath(root)

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        pieces = split_template_path(template)  # refuses '..'
        for folder in self.searchpath:
            path = os.path.join(folder, *pieces)
            real = os.path.realpath(path)
            if os.path.commonpath([self.root, real]) != self.root:
                raise TemplateProblem(
                    f"template snippet {template!r} leads outside the project folder "
                    "through a symlink"
                )
            if not os.path.exists(path):
                continue
            if not os.path.isfile(path):  # a FIFO would hang the read, a device never end it
                raise TemplateProblem(f"template snippet {template!r} is not a regular file")
            if os.path.getsize(real) > MAX_SNIPPET_BYTES:
                raise TemplateProblem(f"template snippet {template!r} is too large")
        return super().get_source(environment, template)


@dataclass
class Templates:
    """Renders prompt templates of one storyboard; snippets come from `templates_dir`."""

    templates_dir: Path | None
    root: Path | None = None  # the project folder snippets must stay in (default: the parent)

    def __post_init__(self) -> None:
        root = self.root or (self.templates_dir.parent if self.templates_dir else None)
        loader = (
            _FolderLoader(str(self.templates_dir), str(root))
            if self.templates_dir and self.templates_dir.is_dir()
            else None
        )
        self.env = _Sandbox(
            loader=loader,
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=False,
        )
        self._cache: dict[str, jinja2.Template] = {}

    def render(self, source: str, variables: Mapping[str, Any]) -> str:
        if "{" not in source:  # most prompt lines are plain text: skip Jinja entirely
            return _as_jinja_would(source)
        simple = _substitute(source, variables)
        if simple is not None:
            return simple
        try:
            template = self._cache.get(source)
            if template is None:
                template = self._cache[source] = self.env.from_string(source)
            _check_variables(variables)
            token = _budget.set(_Budget())
            try:
                return _generate(template, variables)
            finally:
                _budget.reset(token)
        except TemplateProblem:
            raise
        except jinja2.TemplateSyntaxError as err:
            where = f" in {err.name}" if err.name else ""
            raise TemplateProblem(
                f"template syntax error{where}: {err.message}", None if err.name else err.lineno
            ) from None
        except jinja2.UndefinedError as err:
            raise TemplateProblem(_undefined_message(err)) from None
        except jinja2.exceptions.SecurityError as err:
            raise TemplateProblem(f"the template is not allowed to do that: {err}") from None
        except jinja2.TemplateNotFound as err:
            raise TemplateProblem(
                f"template snippet {err.name!r} not found in {self.templates_dir}"
            ) from None
        except jinja2.TemplateError as err:
            raise TemplateProblem(f"template error: {err}") from None
        except (
            ArithmeticError,
            TypeError,
            ValueError,
            AttributeError,
            LookupError,
            RecursionError,
            OverflowError,
            MemoryError,
        ) as err:
            raise TemplateProblem(f"the template failed: {type(err).__name__}: {err}") from None


def _generate(template: jinja2.Template, variables: Mapping[str, Any]) -> str:
    pieces, size = [], 0
    for piece in template.generate(variables):
        size += len(piece)
        if size > MAX_OUTPUT:
            raise TemplateProblem(f"the template renders to more than {MAX_OUTPUT:,} characters")
        pieces.append(piece)
    return "".join(pieces)


def _check_variables(variables: Mapping[str, Any]) -> None:
    """Every value a template starts from is within the bounds of what it may build."""
    for name, value in variables.items():
        if _size(value) > MAX_SEQUENCE:
            raise TemplateProblem(
                f"variable {name!r} holds more than {MAX_SEQUENCE:,} characters or items"
            )


_UNDEFINED = re.compile(r"'([^']+)' is undefined")
_PLACEHOLDER = re.compile(r"\{\{-?\s*([A-Za-z_][A-Za-z0-9_]*)\s*-?\}\}")


def _substitute(source: str, variables: Mapping[str, Any]) -> str | None:
    """Render templates made only of `{{ name }}` with plain string or number values, without
    compiling them (compiling is most of validate's time on a 1,000-scene storyboard). Anything
    else, an undefined name included, returns None and goes through Jinja for its exact output
    and error messages."""
    if "{%" in source or "{#" in source or "-}}" in source or "{{-" in source:
        return None
    names = _PLACEHOLDER.findall(source)
    rest = _PLACEHOLDER.sub("", source)
    if "{{" in rest or "}}" in rest:
        return None
    values = {}
    for name in names:
        value = variables.get(name)
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            return None
        values[name] = str(value)
    out = _PLACEHOLDER.sub(lambda m: values[m.group(1)], _as_jinja_would(source))
    return out if len(out) <= MAX_OUTPUT else None


def _as_jinja_would(text: str) -> str:
    """Template text as Jinja outputs it: newlines normalised, one trailing newline dropped."""
    return text.replace("\r\n", "\n").replace("\r", "\n").removesuffix("\n")


def _undefined_message(err: jinja2.UndefinedError) -> str:
    found = _UNDEFINED.search(str(err))
    if found:
        return (
            f"undefined variable {found.group(1)!r} in the template "
            "(define it under vars, or pass --var NAME=VALUE)"
        )
    return f"undefined value in the template: {err}"
