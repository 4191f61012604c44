"""The CI pieces, tested offline: the pre-commit hook's entry on real storyboards, and the
composite action's run steps in bash with the environment the action gives them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).parents[2]
BIN = Path(sys.executable).parent
GOOD = """
version: 1
name: {name}
defaults: {{provider: preview}}
scenes:
  - id: a
    prompt: first
  - id: b
    prompt: second
    image: {{from: a, frame: last}}
"""


def hooks() -> list[dict[str, Any]]:
    loaded: list[dict[str, Any]] = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    return loaded


def test_the_hook_validates_the_storyboards_it_is_given(tmp_path: Path) -> None:
    [hook] = [h for h in hooks() if h["id"] == "hailuo-pipe-validate"]
    assert hook["language"] == "python" and hook["pass_filenames"] is True
    specs = tmp_path / "specs"
    specs.mkdir()
    for name in ("one", "two"):
        (specs / f"{name}.yaml").write_text(GOOD.format(name=name))
    entry = hook["entry"].split()
    assert shutil.which(entry[0], path=str(BIN)), "the hook's command is what the package installs"
    command = [str(BIN / entry[0]), *entry[1:]]
    ok = subprocess.run(
        [*command, "specs/one.yaml", "specs/two.yaml"], cwd=tmp_path, capture_output=True,
        text=True, timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines() == [
        "specs/one.yaml: ok (2 scenes)",
        "specs/two.yaml: ok (2 scenes)",
    ]
    (specs / "two.yaml").write_text(GOOD.format(name="two").replace("frame: last", "frame: mid"))
    bad = subprocess.run(
        [*command, "specs/one.yaml", "specs/two.yaml"], cwd=tmp_path, capture_output=True,
        text=True, timeout=60,
    )
    assert bad.returncode == 1 and "specs/two.yaml:" in bad.stderr  # file:line:col, commit refused


def test_the_hook_picks_storyboards_not_every_yaml_file() -> None:
    [hook] = hooks()
    files = re.compile(hook["files"])
    assert files.search("specs/demo.yaml") and files.search("film/specs/teaser.yml")
    for other in (".github/workflows/ci.yml", "docker-compose.yaml", "specs/templates/x.yaml"):
        assert not files.search(other), other


# -- the composite action -------------------------------------------------------------------


def action() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "action.yml").read_text())
    return loaded


class Expressions:
    """The few GitHub expressions action.yml uses, evaluated as the runner would."""

    def __init__(self, inputs: dict[str, str], temp: Path) -> None:
        self.inputs = inputs
        self.temp = temp
        self.outputs: dict[str, dict[str, str]] = {}

    def value(self, expr: str) -> str:
        expr = expr.strip()
        if "||" in expr:
            first, rest = expr.split("||", 1)
            return self.value(first) or self.value(rest)
        if m := re.fullmatch(r"format\('([^']*)', *(.+)\)", expr):
            return m.group(1).replace("{0}", self.value(m.group(2)))
        if m := re.fullmatch(r"(.+?) *== *'([^']*)'", expr):
            return "true" if self.value(m.group(1)) == m.group(2) else ""
        if expr.startswith("inputs."):
            name = expr.removeprefix("inputs.")
            return self.inputs.get(name, action()["inputs"][name].get("default", ""))
        if m := re.fullmatch(r"steps\.([\w-]+)\.outputs\.([\w-]+)", expr):
            return self.outputs.get(m.group(1), {}).get(m.group(2), "")
        if expr == "runner.temp":
            return str(self.temp)
        raise AssertionError(f"an expression the test does not know: {expr}")

    def text(self, text: str) -> str:
        return re.sub(r"\$\{\{(.+?)\}\}", lambda m: self.value(m.group(1)), text)


def run_action(inputs: dict[str, str], work: Path, temp: Path) -> Path:
    """Every run step but the install (pip, from the network), in bash as the runner runs
    composite steps; returns the job summary."""
    exprs = Expressions(inputs, temp)
    summary = temp / "summary.md"
    for step in action()["runs"]["steps"]:
        if "run" not in step:
            assert step["uses"].startswith("actions/setup-python@")
            continue
        if step["name"] == "Install hailuo-pipe":
            assert 'pip install --quiet "${PACKAGE:-$GITHUB_ACTION_PATH}"' in step["run"]
            continue
        if "if" in step and exprs.value(step["if"]) != "true":
            continue
        output = temp / f"output-{step.get('id', 'x')}"
        env = {
            "PATH": f"{BIN}{os.pathsep}/usr/bin:/bin",
            "HOME": str(temp),
            "GITHUB_STEP_SUMMARY": str(summary),
            "GITHUB_OUTPUT": str(output),
            "GITHUB_ACTION_PATH": str(ROOT),
            **{k: exprs.text(str(v)) for k, v in step.get("env", {}).items()},
        }
        got = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
            cwd=work, env=env, capture_output=True, text=True, timeout=300,
        )
        assert got.returncode == 0, f"{step['name']}: {got.stdout}{got.stderr}"
        if output.exists():
            pairs = (line.split("=", 1) for line in output.read_text().splitlines())
            exprs.outputs[step.get("id", "")] = dict(pairs)
    return summary


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    work = tmp_path / "repo"
    (work / "specs").mkdir(parents=True)
    for name in ("trailer", "teaser"):
        (work / "specs" / f"{name}.yaml").write_text(GOOD.format(name=name))
    return work


def test_the_action_validates_and_puts_each_plan_in_the_job_summary(
    repo: Path, tmp_path: Path
) -> None:
    summary = run_action({"specs": "specs/trailer.yaml specs/teaser.yaml"}, repo, tmp_path)
    text = summary.read_text()
    assert "### hailuo-pipe plan: `specs/trailer.yaml`" in text
    assert text.count("Plan: 2 to create; 0 up to date. Cost of this run: $0.00") == 2
    plans = tmp_path / "hailuo-pipe-plans"
    assert sorted(p.name for p in plans.iterdir()) == ["teaser.plan.json", "trailer.plan.json"]
    assert not (repo / "specs" / "trailer.lock").exists()  # render: false renders nothing


def test_the_action_renders_exactly_its_plans_when_asked(repo: Path, tmp_path: Path) -> None:
    inputs = {"specs": "specs/trailer.yaml", "render": "true", "plan-dir": str(tmp_path / "p")}
    run_action(inputs, repo, tmp_path)
    lock = (repo / "specs" / "trailer.lock").read_text()
    assert lock.count('"state": "done"') == 2
    assert (tmp_path / "p" / "trailer.plan.json").is_file()


def test_a_broken_storyboard_fails_the_action_before_any_plan(repo: Path, tmp_path: Path) -> None:
    (repo / "specs" / "teaser.yaml").write_text("version: 1\nscenes: []\n")
    with pytest.raises(AssertionError, match="Validate"):
        run_action({"specs": "specs/trailer.yaml specs/teaser.yaml"}, repo, tmp_path)
    assert not (tmp_path / "summary.md").exists()
