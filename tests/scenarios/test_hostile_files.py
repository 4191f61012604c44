"""Hostile files beside a storyboard: symlinks out of the project, special files, shared
render folders. Each is refused before anything is spent, located where a key names the path,
and no secret from the environment reaches the lockfile, a request or the output."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from hailuo_pipe.cache import open_cache
from hailuo_pipe.errors import LockfileError
from hailuo_pipe.state.lockfile import Lockfile, exclusive

SECRET = "ws-fake-secret-0123456789abcdef"

STORY = """
version: 1
name: g
defaults:
  provider: preview
scenes:
  - id: s1
    prompt: a harbor at dawn
  - id: s2
    prompt: a harbor at dusk
"""


def run(
    spec: Path, *args: str, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "WAVESPEED_API_KEY": SECRET, **(env or {})}
    command, *rest = args
    proc = subprocess.run(
        [sys.executable, "-m", "hailuo_pipe", command, *rest, str(spec)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environ,
        cwd=spec.parent,
    )
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out and SECRET not in out, out[-2000:]
    return proc


def render(spec: Path) -> subprocess.CompletedProcess[str]:
    return run(spec, "render", "--provider", "preview")


def no_secret_anywhere(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert SECRET.encode() not in path.read_bytes(), path


# -- 6: the lockfile ---------------------------------------------------------------------------


def test_a_dangling_lockfile_symlink_is_refused_not_taken_as_no_lockfile(
    write_spec: Callable[..., Path],
) -> None:
    spec = write_spec(STORY)
    lock = spec.with_suffix(".lock")
    lock.symlink_to("missing.lock")
    for command in (("plan",), ("render", "--provider", "preview")):
        proc = run(spec, *command)
        assert proc.returncode == 1, proc.stdout
        assert "story.lock" in proc.stderr and "symlink" in proc.stderr, proc.stderr
    assert not (spec.parent / "renders" / "g").exists()  # nothing rendered
    assert lock.is_symlink() and not (spec.parent / "missing.lock").exists()


def test_a_lockfile_symlink_out_of_the_project_is_refused(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    spec = project / "story.yaml"
    spec.write_text(STORY, encoding="utf-8")
    outside = tmp_path / "elsewhere.lock"
    outside.write_text('{"version": 1, "storyboard": "g", "scenes": {}}\n', encoding="utf-8")
    (project / "story.lock").symlink_to(outside)
    proc = run(spec, "validate")
    assert proc.returncode == 1
    assert re.search(r"story\.yaml:\d+:\d+: the lockfile .*outside", proc.stderr)
    with pytest.raises(LockfileError, match="outside the project"):
        Lockfile.load(project / "story.lock", "g")
    assert render(spec).returncode == 1
    assert outside.read_text(encoding="utf-8").count("scenes") == 1  # not rewritten


def test_a_lockfile_symlink_inside_the_project_is_fine(write_spec: Callable[..., Path]) -> None:
    spec = write_spec(STORY)
    assert render(spec).returncode == 0
    real = spec.parent / "locks" / "story.lock"
    real.parent.mkdir()
    spec.with_suffix(".lock").rename(real)
    spec.with_suffix(".lock").symlink_to("locks/story.lock")
    proc = run(spec, "plan")
    assert proc.returncode == 0, proc.stderr
    assert "$0" in proc.stdout or "nothing" in proc.stdout.lower() or "keep" in proc.stdout


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "too-big"])
def test_a_lockfile_that_is_no_regular_file_is_refused_quickly(
    write_spec: Callable[..., Path], kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = write_spec(STORY)
    lock = spec.with_suffix(".lock")
    if kind == "fifo":
        os.mkfifo(lock)
    elif kind == "dev-zero":
        lock.symlink_to("/dev/zero")
    else:
        import hailuo_pipe.state.lockfile as lockfile

        monkeypatch.setattr(lockfile, "MAX_LOCKFILE_BYTES", 100)
        lock.write_text('{"version": 1, "scenes": {}, "storyboard": "g"}' + " " * 100)
    started = time.monotonic()
    with pytest.raises(LockfileError, match=r"regular file|outside|bytes"):
        Lockfile.load(lock, "g")
    assert time.monotonic() - started < 5
    if kind != "too-big":
        proc = run(spec, "plan", timeout=30)
        assert proc.returncode == 1 and "story.lock" in proc.stderr


# -- 7: templates, images, renders/, output.path -----------------------------------------------


def test_templates_symlinked_to_proc_self_cannot_leak_the_environment(
    write_spec: Callable[..., Path],
) -> None:
    spec = write_spec(
        """
        version: 1
        name: g
        defaults:
          provider: preview
        scenes:
          - id: s1
            prompt: "a harbor {% include 'environ' %}"
        """
    )
    (spec.parent / "templates").symlink_to("/proc/self")
    proc = run(spec, "validate")
    assert proc.returncode == 1
    assert re.search(r"story\.yaml:7:13: .*'environ' leads outside the project", proc.stderr)
    assert render(spec).returncode == 1
    assert not spec.with_suffix(".lock").exists()
    no_secret_anywhere(spec.parent)


def test_a_snippet_symlinked_inside_the_project_is_fine(write_spec: Callable[..., Path]) -> None:
    spec = write_spec(
        """
        version: 1
        name: g
        defaults:
          provider: preview
        scenes:
          - id: s1
            prompt: "a harbor {% include 'mood.txt' %}"
        """
    )
    (spec.parent / "shared").mkdir()
    (spec.parent / "shared" / "mood.txt").write_text("in fog", encoding="utf-8")
    (spec.parent / "templates").symlink_to("shared")
    assert run(spec, "validate").returncode == 0
    assert render(spec).returncode == 0
    lock = json.loads(spec.with_suffix(".lock").read_text(encoding="utf-8"))
    assert "in fog" in json.dumps(lock)


def test_a_fifo_snippet_is_refused_without_hanging(write_spec: Callable[..., Path]) -> None:
    spec = write_spec(
        """
        version: 1
        name: g
        defaults:
          provider: preview
        scenes:
          - id: s1
            prompt: "a harbor {% include 'pipe' %}"
        """
    )
    (spec.parent / "templates").mkdir()
    os.mkfifo(spec.parent / "templates" / "pipe")
    proc = run(spec, "validate", timeout=30)
    assert proc.returncode == 1 and "not a regular file" in proc.stderr


def test_an_image_symlinked_out_of_the_project_is_refused_at_its_key(
    write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    spec = write_spec(
        """
        version: 1
        name: g
        defaults:
          provider: preview
        scenes:
          - id: s1
            prompt: a harbor
            image: assets/link.png
        """
    )
    outside = tmp_path.parent / f"{tmp_path.name}-outside.png"
    (spec.parent / "assets" / "a.png").rename(outside)
    (spec.parent / "assets" / "link.png").symlink_to(outside)
    try:
        proc = run(spec, "validate")
        assert proc.returncode == 1
        assert re.search(r"story\.yaml:8:12: image assets/link\.png leads outside", proc.stderr)
        assert render(spec).returncode == 1
        assert not spec.with_suffix(".lock").exists()
    finally:
        outside.unlink()


def test_a_renders_symlink_out_of_the_project_is_refused_at_the_name(
    write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    spec = write_spec(STORY)
    elsewhere = tmp_path.parent / f"{tmp_path.name}-elsewhere"
    elsewhere.mkdir()
    try:
        (spec.parent / "renders").symlink_to(elsewhere)
        proc = run(spec, "validate")
        assert proc.returncode == 1
        assert re.search(r"story\.yaml:2:1: the render folder renders/ leads outside", proc.stderr)
        assert render(spec).returncode == 1
        assert list(elsewhere.iterdir()) == []  # not even the schema memo
    finally:
        for path in sorted(elsewhere.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        elsewhere.rmdir()


def test_output_path_symlinked_out_of_the_project_is_refused(
    write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    spec = write_spec(STORY + "output:\n  path: film.mp4\n  sequence: [s1, s2]\n")
    victim = tmp_path.parent / f"{tmp_path.name}-victim.mp4"
    victim.write_bytes(b"precious")
    try:
        (spec.parent / "film.mp4").symlink_to(victim)
        proc = run(spec, "validate")
        assert proc.returncode == 1
        assert re.search(r"story\.yaml:11:9: output\.path film\.mp4 leads outside", proc.stderr)
        assert render(spec).returncode == 1
        assert victim.read_bytes() == b"precious"
    finally:
        victim.unlink()


@pytest.mark.parametrize("path", ["renders/g/s1.mp4", "renders/g/cut.mp4", "./renders/g/final.mp4"])
def test_output_path_inside_the_render_folder_is_refused(
    write_spec: Callable[..., Path], path: str
) -> None:
    spec = write_spec(STORY + f"output:\n  path: {path}\n  sequence: [s1, s2]\n")
    proc = run(spec, "validate")
    assert proc.returncode == 1
    assert re.search(r"story\.yaml:11:9: output\.path .* is inside renders/g/", proc.stderr)


def test_output_path_beside_the_render_folder_is_fine(write_spec: Callable[..., Path]) -> None:
    spec = write_spec(STORY + "output:\n  path: renders/g.mp4\n  sequence: [s1, s2]\n")
    assert run(spec, "validate").returncode == 0


# -- 8: the pid file ---------------------------------------------------------------------------


def test_a_pid_file_symlink_is_never_followed(write_spec: Callable[..., Path]) -> None:
    spec = write_spec(STORY)
    victim = spec.parent / "victim.txt"
    victim.write_text("precious", encoding="utf-8")
    pid = spec.parent / ".story.lock.pid"
    pid.symlink_to("victim.txt")
    proc = render(spec)
    assert proc.returncode == 1 and ".story.lock.pid" in proc.stderr
    assert victim.read_text(encoding="utf-8") == "precious"
    # the library refuses it too, even when validate was not run first
    with pytest.raises(LockfileError, match="symlink"), exclusive(spec.with_suffix(".lock")):
        pass
    assert victim.read_text(encoding="utf-8") == "precious"
    pid.unlink()
    assert render(spec).returncode == 0


def test_a_dangling_pid_file_symlink_creates_nothing(write_spec: Callable[..., Path]) -> None:
    spec = write_spec(STORY)
    (spec.parent / ".story.lock.pid").symlink_to("created-by-us")
    with pytest.raises(LockfileError, match="symlink"), exclusive(spec.with_suffix(".lock")):
        pass
    assert not (spec.parent / "created-by-us").exists()


# -- 9: storyboards of one name ----------------------------------------------------------------


def test_two_storyboards_of_one_name_in_a_folder_are_refused(
    write_spec: Callable[..., Path],
) -> None:
    a = write_spec(STORY, "a.yaml")
    b = write_spec("# the other one\n" + STORY.lstrip("\n"), "b.yaml")
    write_spec(STORY.replace("name: g", "name: other"), "c.yaml")
    write_spec("version: 1\nname: [not, a, name]\n", "junk.yaml")
    write_spec("name: g\non: push\n", "workflow.yml")  # not a storyboard: no version
    proc = run(a, "validate")
    assert proc.returncode == 1
    assert re.search(r"a\.yaml:2:1: storyboard name 'g' is also declared by b\.yaml", proc.stderr)
    proc = run(b, "render", "--provider", "preview")
    assert proc.returncode == 1
    assert re.search(r"b\.yaml:3:1: storyboard name 'g' is also declared by a\.yaml", proc.stderr)
    assert not (a.parent / "renders" / "g").exists()
    b.write_text(STORY.replace("name: g", "name: h"), encoding="utf-8")
    assert run(a, "validate").returncode == 0


# -- 17: the spec itself -----------------------------------------------------------------------


def test_validate_dev_zero_ends_with_a_clear_error(tmp_path: Path) -> None:
    proc = run(Path("/dev/zero"), "validate", timeout=30)
    assert proc.returncode == 1
    assert "/dev/zero:1:1: the storyboard is not a regular file (a device)" in proc.stderr


def test_a_fifo_spec_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "story.yaml"
    os.mkfifo(fifo)
    proc = run(fifo, "validate", timeout=30)
    assert proc.returncode == 1 and "not a regular file (a FIFO)" in proc.stderr


def test_an_oversized_spec_says_the_limit(tmp_path: Path) -> None:
    spec = tmp_path / "story.yaml"
    with spec.open("wb") as f:
        f.truncate(9 * 1024 * 1024)
    proc = run(spec, "validate", timeout=30)
    assert proc.returncode == 1 and "at most 8,388,608 are allowed" in proc.stderr


# -- 19: the folder cache ----------------------------------------------------------------------


def test_plan_and_validate_do_not_create_a_missing_cache_folder(
    write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    folder = tmp_path / "elsewhere" / "cache"
    spec = write_spec(STORY + f"cache: {folder.as_uri()}\n")
    for command in (("validate",), ("plan",), ("status",)):
        proc = run(spec, *command)
        assert "Traceback" not in proc.stderr
        assert not (tmp_path / "elsewhere").exists(), command
    assert run(spec, "plan").returncode == 0
    assert render(spec).returncode == 0  # the first write makes it


def test_cache_gc_removes_stale_temp_files(
    tmp_path: Path, write_spec: Callable[..., Path]
) -> None:
    folder = tmp_path / "cache"
    cache = open_cache(folder.as_uri())
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"x" * 100)
    old = folder / "clips" / "ab" / ".clip.mp4.k1ll3d.tmp"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"half")
    young = folder / ".meta.json.y0ung.tmp"
    young.write_bytes(b"half")
    past = time.time() - 7200
    os.utime(old, (past, past))
    cache.gc([], grace=3600)
    assert not old.exists() and young.exists()
    spec = write_spec(STORY)
    proc = run(spec, "cache", "gc", "--cache", folder.as_uri(), "--grace", "0")
    assert proc.returncode == 0, proc.stderr
    assert not young.exists()


# -- a recorded clip that is not a file ----------------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_a_recorded_clip_replaced_by_a_special_file_does_not_hang_plan(
    write_spec: Callable[..., Path], kind: str
) -> None:
    spec = write_spec(STORY)
    assert render(spec).returncode == 0
    lock_path = spec.with_suffix(".lock")
    lock = json.loads(lock_path.read_text(encoding="utf-8"))
    empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    lock["scenes"]["s1"]["output"].update(size=0, sha256=empty)
    lock_path.write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    clip = spec.parent / lock["scenes"]["s1"]["output"]["path"]
    clip.unlink()
    os.mkfifo(clip) if kind == "fifo" else clip.symlink_to("/dev/zero")
    proc = run(spec, "plan", "--provider", "preview", timeout=30)
    assert proc.returncode == 0 and "s1" in proc.stdout, proc.stderr


def test_output_path_inside_another_storyboards_render_folder_is_refused(
    write_spec: Callable[..., Path],
) -> None:
    write_spec(STORY.replace("name: g", "name: other"), "other.yaml")
    spec = write_spec(STORY + "output:\n  path: renders/other/s1.mp4\n  sequence: [s1, s2]\n")
    proc = run(spec, "validate")
    assert proc.returncode == 1
    assert re.search(
        r"story\.yaml:11:9: output\.path renders/other/s1\.mp4 is inside renders/other/, "
        r"where the clips of other\.yaml are kept",
        proc.stderr,
    )


def test_a_chained_frame_symlinked_out_of_the_project_is_never_sent(
    write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    chained = """
    version: 1
    name: g
    defaults:
      provider: preview
    scenes:
      - id: s1
        prompt: a harbor at dawn
      - id: s2
        prompt: PROMPT
        image: {from: s1, frame: last}
    """
    spec = write_spec(chained.replace("PROMPT", "the same harbor"))
    assert render(spec).returncode == 0
    lock = json.loads(spec.with_suffix(".lock").read_text(encoding="utf-8"))
    frame = spec.parent / lock["scenes"]["s1"]["frames"]["last"]["path"]
    private = tmp_path.parent / f"{tmp_path.name}-private.png"
    frame.rename(private)
    frame.symlink_to(private)
    try:
        spec.write_text(
            textwrap.dedent(chained.replace("PROMPT", "the harbor at noon")).lstrip(),
            encoding="utf-8",
        )
        secret = private.read_bytes()
        proc = render(spec)
        # the frame no longer matches its record, so it is extracted again from s1's clip
        # (free) before s2 takes it: the file outside is neither read for s2 nor written
        assert proc.returncode == 0, proc.stderr
        assert not frame.is_symlink() and frame.is_file()
        assert private.read_bytes() == secret
        after = json.loads(spec.with_suffix(".lock").read_text(encoding="utf-8"))
        assert after["scenes"]["s1"]["output"] == lock["scenes"]["s1"]["output"]
    finally:
        private.unlink()


@pytest.mark.parametrize("name", [".hashes.json", ".checked-requests"])
@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_special_files_as_the_render_folders_memos_do_not_hang(
    write_spec: Callable[..., Path], name: str, kind: str
) -> None:
    spec = write_spec(STORY)
    assert render(spec).returncode == 0
    memo = spec.parent / "renders" / "g" / name
    memo.unlink(missing_ok=True)
    os.mkfifo(memo) if kind == "fifo" else memo.symlink_to("/dev/zero")
    proc = run(spec, "plan", "--provider", "preview", timeout=30)
    assert proc.returncode == 0, proc.stderr


def test_two_storyboards_with_one_cut_path_are_refused(write_spec: Callable[..., Path]) -> None:
    cut = "output:\n  path: film.mp4\n  sequence: [s1, s2]\n"
    write_spec(STORY.replace("name: g", "name: other") + cut, "other.yaml")
    spec = write_spec(STORY + cut.replace("film.mp4", "./film.mp4"))
    proc = run(spec, "validate")
    assert proc.returncode == 1
    assert re.search(
        r"story\.yaml:11:9: output\.path \./film\.mp4 is also the cut of other\.yaml", proc.stderr
    )
    spec.write_text(spec.read_text().replace("./film.mp4", "film-2.mp4"), encoding="utf-8")
    assert run(spec, "validate").returncode == 0
