"""Prompt templates: the fast path agrees with Jinja, and the sandbox holds."""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hailuo_pipe.storyboard.templates import TemplateProblem, Templates

NAMES = st.sampled_from(["city", "look", "n", "x_1"])
TEXT = st.text(alphabet=st.characters(blacklist_characters="{}%#", codec="utf-8"), max_size=30)
VALUES = st.one_of(TEXT, st.integers(-1000, 1000), st.floats(allow_nan=False, width=32))


@given(
    parts=st.lists(st.tuples(TEXT, NAMES), max_size=5),
    tail=TEXT,
    values=st.fixed_dictionaries({"city": VALUES, "look": VALUES, "n": VALUES, "x_1": VALUES}),
)
def test_fast_substitution_renders_exactly_like_jinja(parts, tail, values) -> None:  # type: ignore[no-untyped-def]
    source = "".join(f"{text}{{{{ {name} }}}}" for text, name in parts) + tail
    expected = jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(source)
    assert Templates(None).render(source, values) == expected.render(values)


def test_trailing_newline_handled_like_jinja() -> None:
    t = Templates(None)
    assert t.render("plain\n", {}) == "plain"
    assert t.render("{{ a }}\n", {"a": "x"}) == "x"
    assert t.render("{% if true %}y{% endif %}\n", {}) == "y"


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ lipsum.__globals__['os'] }}",
        "{{ self._TemplateReference__context }}",
        "{{ range.__self__ }}",
        "{% for i in range(10**9) %}{% endfor %}",
        "{% for i in range(60000) %}{% for j in range(60000) %}{% endfor %}{% endfor %}",
        "{{ 'x' * 10**9 }}",
        "{{ 9**999999 }}",
        "{{ [1] * 10**8 }}",
        "{% include '/etc/passwd' %}",
        "{% include '../secret.txt' %}",
    ],
)
def test_sandbox_refuses(source: str, tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("TOP SECRET")
    (tmp_path / "templates").mkdir()
    with pytest.raises(TemplateProblem) as err:
        Templates(tmp_path / "templates").render(source, {})
    assert "TOP SECRET" not in str(err.value) and "root:" not in str(err.value)


def test_output_is_bounded() -> None:
    with pytest.raises(TemplateProblem, match="more than 20,000 characters"):
        Templates(None).render("{% for i in range(30000) %}ab{% endfor %}", {})
