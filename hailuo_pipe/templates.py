"""Prompt templates: Jinja2 in a sandbox, strict about undefined variables, bounded in work.

A storyboard comes from a file someone else may have written, so templates cannot reach Python
internals (the sandbox), files outside the `templates/` folder beside the spec (the loader), or
the environment, and cannot make the program loop or allocate without bound.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEnvironment

MAX_OUTPUT = 20_000  # characters: far above the 2000 a prompt may have, low enough to stop bombs
MAX_ITERATIONS = 100_000  # loop steps through range() in one template
MAX_SEQUENCE = 100_000  # length of a string or list built with * or **


class TemplateProblem(Exception):
    """A template failed; `line` is 1-based within the template text (None when unknown)."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


class _Budget:
    def __init__(self) -> None:
        self.steps = 0

    def range(self, *args: int) -> Iterator[int]:
        for value in range(*args):
            self.steps += 1
            if self.steps > MAX_ITERATIONS:
                raise TemplateProblem(f"the template loops more than {MAX_ITERATIONS:,} times")
            yield value


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(
        self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any
    ) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > 64:
            raise TemplateProblem("the template raises a number to too large a power")
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(n, int)
                    and len(seq) * n > MAX_SEQUENCE
                ):
                    raise TemplateProblem("the template builds too long a string or list")
        return SandboxedEnvironment.call_binop(self, context, operator, left, right)


@dataclass
class Templates:
    """Renders prompt templates of one storyboard; snippets come from `templates_dir`."""

    templates_dir: Path | None

    def __post_init__(self) -> None:
        loader = (
            jinja2.FileSystemLoader(str(self.templates_dir))
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
            budget = _Budget()
            context = {**variables, "range": budget.range}
            pieces, size = [], 0
            for piece in template.generate(context):
                size += len(piece)
                if size > MAX_OUTPUT:
                    raise TemplateProblem(
                        f"the template renders to more than {MAX_OUTPUT:,} characters"
                    )
                pieces.append(piece)
            return "".join(pieces)
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
