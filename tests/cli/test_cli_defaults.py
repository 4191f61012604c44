"""Defaults from the environment and from pyproject.toml: command line > env > pyproject >
built-in, so `plan`, `render` and `status` agree without retyping `--provider`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hailuo_pipe.cli import main
from hailuo_pipe.cli.defaults import environment_names

PAID = """
version: 1
name: paid
defaults: {provider: wavespeed, resolution: 768p}
scenes:
  - id: a
    prompt: first
  - id: b
    prompt: second
    image: {from: a, frame: last}
"""

CLEAN = {"HAILUO_PIPE_PROVIDER": None, "HAILUO_PIPE_VAR": None}


def providers_planned(spec: Path, *args: str, env: dict[str, Any] | None = None) -> set[str]:
    env = {**CLEAN, **(env or {})}
    out = CliRunner().invoke(main, ["plan", "--json", *args, str(spec)], env=env)
    assert out.exit_code == 0, out.output
    return {step["provider"] for step in json.loads(out.stdout)["steps"]}


def test_plan_render_and_status_agree_on_a_provider_from_the_environment(
    write_spec: Any,
) -> None:
    spec = write_spec(PAID)
    env = {**CLEAN, "HAILUO_PIPE_PROVIDER": "preview"}
    assert providers_planned(spec, env=env) == {"preview"}
    rendered = CliRunner().invoke(main, ["render", "--quiet", str(spec)], env=env)
    assert rendered.exit_code == 0, rendered.output  # offline: no key was needed
    status = CliRunner().invoke(main, ["status", str(spec)], env=env)
    assert status.exit_code == 0 and "up to date" in status.stdout
    # without it, status looks at the paid renders, which do not exist
    assert CliRunner().invoke(main, ["status", str(spec)], env=CLEAN).exit_code == 1


def test_the_command_line_beats_the_environment_and_a_commands_variable_the_shared_one(
    write_spec: Any,
) -> None:
    spec = write_spec(PAID)
    shared = {"HAILUO_PIPE_PROVIDER": "runware"}
    assert providers_planned(spec, env=shared) == {"runware"}
    assert providers_planned(spec, env={**shared, "HAILUO_PIPE_PLAN_PROVIDER": "preview"}) == {
        "preview"
    }
    assert providers_planned(spec, "--provider", "minimax", env=shared) == {"minimax"}


def test_the_nearest_pyproject_with_a_table_gives_defaults_below_the_environment(
    tmp_path: Path, write_spec: Any
) -> None:
    spec = write_spec(PAID, name="story.yaml")
    nested = tmp_path / "specs"
    nested.mkdir()
    (nested / "assets").symlink_to(tmp_path / "assets")
    inner = nested / "story.yaml"
    inner.write_text(spec.read_text())
    (tmp_path / "pyproject.toml").write_text('[tool.hailuo-pipe]\nprovider = "preview"\n')
    assert providers_planned(inner) == {"preview"}  # found above the storyboard
    # a nearer pyproject.toml without the table is passed over; one with it wins
    (nested / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert providers_planned(inner) == {"preview"}
    (nested / "pyproject.toml").write_text(
        '[tool.hailuo-pipe]\nprovider = "runware"\n[tool.hailuo-pipe.plan]\nprovider = "minimax"\n'
    )
    assert providers_planned(inner) == {"minimax"}  # the command's own table first
    # the environment beats pyproject.toml, the command line beats both
    assert providers_planned(inner, env={"HAILUO_PIPE_PROVIDER": "gmicloud"}) == {"gmicloud"}
    assert providers_planned(inner, "--provider", "wavespeed") == {"wavespeed"}


def test_pyproject_values_reach_every_kind_of_option(write_spec: Any, tmp_path: Path) -> None:
    spec = write_spec(
        PAID.replace("prompt: first", 'prompt: "in {{ city }}"') + "vars: {city: Lima}\n"
    )
    (tmp_path / "pyproject.toml").write_text(
        '[tool.hailuo-pipe]\nprovider = "preview"\nvar = {city = "Oslo"}\n'
        "[tool.hailuo-pipe.render]\nconcurrency = 1\nquiet = true\n"
    )
    out = CliRunner().invoke(main, ["render", str(spec)], env=CLEAN)
    assert out.exit_code == 0, out.output
    assert len(out.stdout.splitlines()) == 1  # quiet: the summary alone
    [rehearsal] = (tmp_path / "renders").rglob("*.lock")  # preview's own lockfile
    assert "in Oslo" in rehearsal.read_text()


@pytest.mark.parametrize(
    ("table", "says"),
    [
        ("[tool.hailuo-pipe.render]\nconcurency = 8\n", "'concurency', which is not an option"),
        ("[tool.hailuo-pipe.render]\nforce = ['a']\n", "cannot be a default"),
        ("[tool.hailuo-pipe]\nprovider = [1, 2]\n", "takes one value"),
        ("[tool.hailuo-pipe\n", "cannot read it"),
    ],
)
def test_a_wrong_pyproject_table_is_a_usage_error_naming_the_file(
    write_spec: Any, tmp_path: Path, table: str, says: str
) -> None:
    spec = write_spec(PAID)
    (tmp_path / "pyproject.toml").write_text(table)
    out = CliRunner().invoke(main, ["render", str(spec)], env=CLEAN)
    assert out.exit_code == 2
    assert "pyproject.toml" in out.output and says in out.output


def test_a_saved_plan_is_applied_whatever_provider_the_environment_names(
    write_spec: Any, tmp_path: Path
) -> None:
    spec = write_spec(PAID)
    env = {**CLEAN, "HAILUO_PIPE_PROVIDER": "preview"}
    plan_file = tmp_path / "p.json"
    made = CliRunner().invoke(main, ["plan", "--out", str(plan_file), str(spec)], env=env)
    assert made.exit_code == 0, made.output
    args = ["render", "--quiet", "--plan", str(plan_file), str(spec)]
    out = CliRunner().invoke(main, args, env=env)
    assert out.exit_code == 0, out.output


def test_the_readme_names_every_environment_variable() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    documented = set(re.findall(r"HAILUO_PIPE_[A-Z_]+", readme))
    for names, _ in environment_names(main):
        for name in names.split(", "):
            assert name in documented, name
