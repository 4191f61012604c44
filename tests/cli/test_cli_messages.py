"""What the CLI says when things go wrong: once, with what to do, readable by programs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from support.emulator_fixture import provider_env

from hailuo_emulator import Emulator
from hailuo_pipe.cli import main
from hailuo_pipe.state.lockfile import exclusive

PREVIEW = """
version: 1
name: two
defaults: {provider: preview, resolution: 512p}
scenes:
  - id: a
    prompt: first
    image: assets/a.png
  - id: b
    prompt: second
    image: {from: a, frame: last}
output:
  path: renders/two.mp4
  sequence: [a, b]
"""

HOSTED = """
version: 1
name: hosted
defaults: {provider: wavespeed, resolution: 768p}
scenes:
  - id: a
    prompt: first
  - id: b
    prompt: second
    image: {from: a, frame: last}
"""


def test_a_lock_clash_is_said_once_with_wait_and_no_plan(write_spec: Any) -> None:
    spec = write_spec(PREVIEW)
    with exclusive(spec.with_suffix(".lock")):  # another render of this spec, as it were
        out = CliRunner().invoke(main, ["render", str(spec)])
    assert out.exit_code == 1
    assert "Plan:" not in out.output and "  + a" not in out.output
    [line] = out.output.strip().splitlines()
    assert "is being rendered by process" in line and "--wait" in line


def test_a_failed_job_is_one_log_line_then_one_error(
    write_spec: Any, emulator: Emulator
) -> None:
    emulator.configure(fail_jobs=1.0)
    spec = write_spec(HOSTED)
    out = CliRunner().invoke(main, ["render", str(spec)], env=provider_env(emulator))
    assert out.exit_code == 1
    lines = out.stderr.splitlines()
    logged = [line for line in lines if line.split()[1:3] == ["a", "failed"]]
    assert len(logged) == 1, out.stderr
    assert "internal inference error" in logged[0]  # the line that stays is the one with why
    errors = [line for line in lines if line.startswith("error: a:")]
    assert len(errors) == 1


def test_cut_speaks_json(write_spec: Any) -> None:
    spec = write_spec(PREVIEW)
    assert CliRunner().invoke(main, ["render", "--quiet", str(spec)]).exit_code == 0
    out = CliRunner().invoke(main, ["cut", "--json", str(spec)])
    assert out.exit_code == 0, out.output
    got = json.loads(out.stdout)
    assert got["ok"] is True and Path(got["cut"]).is_file()
    # and so does its failure
    (spec.parent / "renders" / "two" / "b.mp4").unlink()
    spec.with_suffix(".lock").write_text(
        spec.with_suffix(".lock").read_text().replace('"done"', '"failed"', 1)
    )
    bad = CliRunner().invoke(main, ["cut", "--json", str(spec)])
    assert bad.exit_code == 1
    assert json.loads(bad.stdout)["ok"] is False


def test_a_ctrl_c_that_python_wrapped_during_an_import_is_still_an_interrupt(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Python 3.11 turns a KeyboardInterrupt raised while a class is being made (a module
    imported as Ctrl-C arrives) into a RuntimeError: still exit 130, never "internal error"."""
    from hailuo_pipe.cli.common import reports_errors

    @reports_errors
    def command() -> None:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as err:
            raise RuntimeError("Error calling __set_name__ on 'Field' instance") from err

    with pytest.raises(SystemExit) as stopped:
        command()
    assert stopped.value.code == 130
    assert "Interrupted" in capsys.readouterr().err
