"""`hailuo-pipe init`: a starter that validates and renders offline, and never overwrites."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from hailuo_pipe.cli import main
from hailuo_pipe.validate import load_storyboard


def test_the_starter_validates_and_renders_offline_with_a_chain_and_a_foreach(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    made = CliRunner().invoke(main, ["init"])
    assert made.exit_code == 0, made.output
    spec = tmp_path / "storyboard.yaml"
    board = load_storyboard(spec)
    assert {s.provider for s in board.scenes} == {"preview"}
    assert [r.scene for s in board.scenes for r in s.frame_refs()] == ["dawn"]  # the chain
    assert {"harbor-noon", "harbor-dusk"} <= {s.id for s in board.scenes}  # the foreach
    assert CliRunner().invoke(main, ["validate", str(spec)]).exit_code == 0
    rendered = CliRunner().invoke(main, ["render", "--quiet", str(spec)], env={})
    assert rendered.exit_code == 0, rendered.output
    assert (tmp_path / "renders" / "storyboard.mp4").is_file()  # the cut
    ignored = (tmp_path / ".gitignore").read_text().splitlines()
    assert "renders/" in ignored and ".*.lock.pid" in ignored


def test_init_never_overwrites_a_storyboard(tmp_path: Path) -> None:
    spec = tmp_path / "mine.yaml"
    spec.write_text("version: 1  # my work\n")
    out = CliRunner().invoke(main, ["init", str(spec)])
    assert out.exit_code == 1
    assert "exists" in out.output and "never overwrites" in out.output
    assert spec.read_text() == "version: 1  # my work\n"
    assert not (tmp_path / ".gitignore").exists()  # nothing at all was written


def test_init_adds_only_the_missing_ignore_entries_and_keeps_the_rest(tmp_path: Path) -> None:
    ignore = tmp_path / ".gitignore"
    ignore.write_text("node_modules/\nrenders/")  # no newline at the end
    out = CliRunner().invoke(main, ["init", str(tmp_path / "films")])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "films" / "storyboard.yaml").is_file()
    # the folder given is where the storyboard goes, and its .gitignore
    assert ignore.read_text() == "node_modules/\nrenders/"
    inner = (tmp_path / "films" / ".gitignore").read_text().splitlines()
    assert "renders/" in inner
    again = CliRunner().invoke(main, ["init", str(tmp_path / "other.yaml")])
    assert again.exit_code == 0
    lines = ignore.read_text().splitlines()
    assert lines[:2] == ["node_modules/", "renders/"]
    assert lines.count("renders/") == 1 and ".*.lock.pid" in lines
