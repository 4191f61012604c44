"""Hostile storyboards: whatever the file holds, validate ends quickly, within bounded memory,
with either success or located errors (`file:line:col: message`), never a traceback.

Templates cannot reach Python internals, files or the environment, and cannot loop or
allocate without bound; scene ids, the storyboard's name and the cut's path cannot lead out
of the spec's folder.
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from hailuo_pipe.validate import check

SPEC = "story.yaml"
LOCATED = re.compile(r"^story\.yaml:(\d+):(\d+): \S")
SETTINGS = settings(
    # CI runs 120 examples a property; HOSTILE_EXAMPLES=5000 searches longer
    max_examples=int(os.environ.get("HOSTILE_EXAMPLES", "120")),
    deadline=3000,  # ms per example, generous for a shared 2-CPU machine; typical is < 20
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
MEMORY_CAP = 1536 * 1024 * 1024  # bytes of address space for the CLI runs below


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    """One folder for all examples (hypothesis runs hundreds), with an image and a secret."""
    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
        root = Path(tmp) / "project"
        (root / "assets").mkdir(parents=True)
        (root / "templates").mkdir()
        Image.new("RGB", (640, 360), (90, 120, 160)).save(root / "assets" / "a.png")
        (Path(tmp) / "secret.txt").write_text("TOP SECRET", encoding="utf-8")
        yield root


def validate_bytes(folder: Path, data: bytes) -> tuple[Any, list[str]]:
    """Run validate's library call on `data` as a spec; check every problem is located."""
    spec = folder / SPEC
    spec.write_bytes(data)
    started = time.monotonic()
    board, problems = check(spec, display=SPEC)
    assert time.monotonic() - started < 10
    shown = [str(p) for p in problems]
    text = data.decode("utf-8", "replace")
    lines = sum(text.count(c) for c in "\n\r\x85\u2028\u2029") + 2  # YAML's line breaks
    for problem, text in zip(problems, shown, strict=True):
        assert LOCATED.match(text), text
        assert 1 <= problem.line <= lines and problem.col >= 1, text
    assert board is not None or problems
    return board, shown


# -- generated storyboards --------------------------------------------------------------------

VALID: dict[str, Any] = {
    "version": 1,
    "name": "hostile",
    "vars": {"city": "Oslo"},
    "defaults": {"provider": "preview"},
    "scenes": [
        {"id": "a", "prompt": "Over {{ city }}", "image": "assets/a.png"},
        {"id": "b", "prompt": "[Pan left] docks", "image": {"from": "a", "frame": "last"}},
    ],
    "output": {"path": "renders/cut.mp4", "sequence": ["a", "b"]},
}

JUNK = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=40)
    | st.sampled_from(
        [
            "x" * 5000,
            "{{",
            "{% for i in range(10**9) %}x{% endfor %}",
            "{{ ''.__class__.__mro__ }}",
            "{{ undefined_thing }}",
            "../../etc/passwd",
            "/etc/passwd",
            "https://",
            "512p",
            "\x00",
            "\ufeff",
            "\u202e",
        ]
    ),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
PATHS = st.sampled_from(
    [
        (),
        ("version",),
        ("name",),
        ("vars",),
        ("vars", "city"),
        ("defaults",),
        ("defaults", "provider"),
        ("defaults", "options"),
        ("scenes",),
        ("scenes", 0),
        ("scenes", 0, "id"),
        ("scenes", 0, "prompt"),
        ("scenes", 0, "image"),
        ("scenes", 1, "image"),
        ("scenes", 1, "image", "from"),
        ("scenes", 1, "foreach"),
        ("scenes", 1, "duration"),
        ("scenes", 1, "options"),
        ("output",),
        ("output", "path"),
        ("output", "sequence"),
        ("extra",),
    ]
)


def mutate(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    """`doc` with the value at `path` replaced (or added)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(doc, dict):
        return {**doc, head: mutate(doc.get(head), rest, value)}
    if isinstance(doc, list) and isinstance(head, int) and head < len(doc):
        return [mutate(v, rest, value) if i == head else v for i, v in enumerate(doc)]
    return value


@SETTINGS
@given(mutations=st.lists(st.tuples(PATHS, JUNK), min_size=1, max_size=4))
@example(mutations=[(("scenes", 0, "image"), "\x00")])  # found by a 3,000-example run
@example(mutations=[(("name",), "\x00")])  # found by CI: the name locates the schema memo
@example(mutations=[(("name",), "n" * 300)])  # a name too long for any file system
def test_mutated_storyboards_end_in_success_or_located_errors(
    folder: Path, mutations: list[tuple[tuple[Any, ...], Any]]
) -> None:
    doc: Any = json.loads(json.dumps(VALID))
    for path, value in mutations:
        doc = mutate(doc, path, value)
    text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    validate_bytes(folder, text.encode("utf-8"))


TOKENS = st.sampled_from(
    [
        "- ",
        ": ",
        "&a ",
        "*a ",
        "&b ",
        "*b ",
        "[",
        "]",
        "{",
        "}",
        ", ",
        "\n",
        "  ",
        "    ",
        "!!python/object:os.system ",
        "!!binary ",
        "<<: *a",
        "? ",
        "|\n",
        ">-\n",
        "'",
        '"',
        "\t",
        "%YAML 1.1\n",
        "---\n",
        "...\n",
        "#",
        "id",
        "scenes",
        "prompt",
        "version: 1\n",
        "name: x\n",
        "{{ x }}",
        "{%",
        "\\",
        "\\u",
        "2001-13-45",
        "0x",
        "1e999",
        ".inf",
        "~",
        "null",
        "yes",
        "\x00",
        "\ufeff",
        "é",
        "\U0001f600",
        "\r\n",
        "\r",
    ]
)


@SETTINGS
@given(tokens=st.lists(TOKENS, max_size=60))
def test_yaml_token_soup_ends_in_success_or_located_errors(folder: Path, tokens: list[str]) -> None:
    validate_bytes(folder, "".join(tokens).encode("utf-8"))


@SETTINGS
@given(data=st.binary(max_size=3000))
def test_binary_junk_ends_in_located_errors(folder: Path, data: bytes) -> None:
    validate_bytes(folder, data)


@SETTINGS
@given(text=st.text(max_size=3000))
def test_arbitrary_text_ends_in_success_or_located_errors(folder: Path, text: str) -> None:
    validate_bytes(folder, text.encode("utf-8", "surrogatepass"))


@SETTINGS
@given(prompt=st.text(alphabet="{}%#~|()[].'\"*_-+ abcxyz0123456789\n", max_size=80))
def test_template_soup_ends_in_success_or_located_errors(folder: Path, prompt: str) -> None:
    doc = mutate(json.loads(json.dumps(VALID)), ("scenes", 0, "prompt"), prompt or "x")
    _, shown = validate_bytes(folder, yaml.safe_dump(doc).encode())
    assert all("TOP SECRET" not in s for s in shown)


# -- paths out of the folder ------------------------------------------------------------------

SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@SETTINGS
@given(scene_id=st.text(max_size=70) | st.sampled_from(["..", ".", "../x", "a/../../b", "a\\b"]))
def test_a_scene_id_never_names_a_file_outside_the_render_folder(
    folder: Path, scene_id: str
) -> None:
    doc = mutate(json.loads(json.dumps(VALID)), ("scenes", 0, "id"), scene_id)
    doc["output"]["sequence"] = [scene_id, "b"]
    doc["scenes"][1]["image"]["from"] = scene_id
    board, shown = validate_bytes(folder, yaml.safe_dump(doc, allow_unicode=True).encode())
    if not shown:  # accepted: its files are inside renders/NAME/
        assert SAFE_ID.match(scene_id) and ".." not in scene_id
        render_dir = board.render_dir.resolve()
        clip = (board.render_dir / f"{board.scenes[0].id}.mp4").resolve()
        assert clip.parent == render_dir


@pytest.mark.parametrize(
    ("where", "value"),
    [
        (("name",), "../escape"),
        (("name",), "/tmp/escape"),
        (("name",), ".."),
        (("name",), "a/b"),
        (("output", "path"), "../../etc/cut.mp4"),
        (("output", "path"), "/etc/cut.mp4"),
        (("output", "path"), "renders/../../cut.mp4"),
        (("output", "path"), "\\\\server\\share\\cut.mp4"),
        (("scenes", 0, "id"), "../x"),
        (("scenes", 0, "id"), "a/b"),
        (("scenes", 0, "id"), ".hidden"),
        (("scenes", 0, "id"), "x" * 65),
    ],
)
def test_paths_that_would_leave_the_folder_are_refused(
    folder: Path, where: tuple[Any, ...], value: str
) -> None:
    doc = mutate(json.loads(json.dumps(VALID)), where, value)
    _, shown = validate_bytes(folder, yaml.safe_dump(doc).encode())
    assert shown, f"{where} = {value!r} was accepted"


@pytest.mark.parametrize("value", ["../../up", "/abs/x", "a/b"])
def test_a_templated_id_cannot_be_steered_out_by_a_var(folder: Path, value: str) -> None:
    doc = mutate(json.loads(json.dumps(VALID)), ("scenes", 0, "id"), "shot-{{ who }}")
    doc["vars"]["who"] = "ok"
    doc["output"]["sequence"] = ["b"]
    doc["scenes"][1]["image"] = "assets/a.png"
    spec = folder / SPEC
    spec.write_text(yaml.safe_dump(doc), encoding="utf-8")
    assert check(spec, display=SPEC)[1] == []
    _, problems = check(spec, overrides={"who": value}, display=SPEC)
    assert any("scene id" in p.message for p in problems)


def test_accepted_cut_paths_stay_inside_the_folder(folder: Path) -> None:
    for path in ("cut.mp4", "renders/cut.mp4", "~/cut.mp4", "C:\\cut.mp4", "a//b/./cut.mp4"):
        doc = mutate(json.loads(json.dumps(VALID)), ("output", "path"), path)
        board, shown = validate_bytes(folder, yaml.safe_dump(doc).encode())
        if not shown:
            where = (board.path.parent / board.output.path).resolve()
            assert where.is_relative_to(folder.resolve()), path


# -- the sandbox ------------------------------------------------------------------------------

ESCAPES = [
    "{{ self.__init__.__globals__ }}",
    "{{ namespace.__init__.__globals__['os'] }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ ''.__class__.__base__.__subclasses__() }}",
    "{{ ''|attr('__class__') }}",
    "{{ ('{0.__class__.__mro__}').format('') }}",
    "{{ '{0.__globals__}'.format(lipsum) }}",
    "{{ '%s'|format(lipsum.__globals__) }}",
    "{{ [].pop.__self__ }}",
    "{% set n = namespace() %}{{ n.__dict__ }}",
    "{{ environ }}",
    "{{ config }}",
    "{{ os.environ }}",
    "{% import 'os' as os %}",
    "{% include '/proc/self/environ' %}",
    "{% include 'templates/../../secret.txt' %}",
    "{% include '..\\\\secret.txt' %}",
    "{% extends '/etc/passwd' %}",
    "{% from '../secret.txt' import x %}",
    "{% include 'link.j2' %}",  # a symlink in templates/ that leads out of it
    "{% include 'zero.j2' %}",  # a symlink to /dev/zero: never read
    "{% include 'fifo.j2' %}",  # a named pipe: never opened (it would block)
]
BOMBS = [
    "{{ 'x'|center(10**8) }}",
    "{{ 'x'.ljust(10**9)|length }}",
    "{{ 'x'|indent(10**8)|length }}",
    "{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}"
    "{% endfor %}{{ ns.s|length }}",
    "{{ lipsum(10**5)|length }}",
    "{{ ('%0900000000d'|format(1))|length }}",
    "{{ '%0900000000d' % 1 }}",
    "{{ '{:>900000000}'.format('x')|length }}",
    "{{ 'ab'|replace('', 'x' * 99999)|length }}",
    "{{ range(99999)|join('x' * 99999)|length }}",
    "{{ ['x' * 99999] * 99999 }}",
    "{{ ('x' * 99999) + ('x' * 99999) }}",
    "{% for x in 'x' * 99999 %}{% for y in 'y' * 99999 %}{% endfor %}{% endfor %}",
    "{% for i in range(99999) %}{{ range(99999)|sum }}{% endfor %}",
    "{% set a = 9**64 %}" + "{% set a = a * a %}" * 20 + "{{ a|string|length }}",
    "{{ ((9**64)**64)**64 }}",
    "{% for x in [1] recursive %}{{ loop([1]) }}{% endfor %}",
    "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    "{{ ('x' * 9999)|wordwrap(1, wrapstring='y' * 9999)|length }}",
]


def sandbox_spec(folder: Path, prompts: list[str]) -> Path:
    """A storyboard with one scene per prompt, and traps in its templates/ folder."""
    templates = folder / "templates"
    for name, target in (("link.j2", folder.parent / "secret.txt"), ("zero.j2", "/dev/zero")):
        if not (templates / name).is_symlink():
            (templates / name).symlink_to(target)
    if not (templates / "fifo.j2").exists():
        os.mkfifo(templates / "fifo.j2")
    doc = {
        "version": 1,
        "name": "sandbox",
        "defaults": {"provider": "preview"},
        "scenes": [{"id": f"s{i}", "prompt": p} for i, p in enumerate(prompts)],
    }
    spec = folder / "sandbox.yaml"
    spec.write_text(yaml.safe_dump(doc, width=10_000), encoding="utf-8")
    return spec


def capped_validate(spec: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`hailuo-pipe validate` in a child whose memory is capped: a bomb fails, not the host."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))

    env = {**os.environ, "LEAK_ME": "env-secret-0b9f"}
    return subprocess.run(
        [sys.executable, "-m", "hailuo_pipe", "validate", str(spec)],
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=cap,
        env=env,
        cwd=spec.parent,
    )


def problems_by_scene(proc: subprocess.CompletedProcess[str], spec: Path) -> dict[int, str]:
    """Scene index -> its problem, from validate's located lines (the k-th scene's prompt is
    on line 6 + 2k of the generated storyboard)."""
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    out: dict[int, str] = {}
    for line in proc.stderr.splitlines():
        found = re.match(rf"^{re.escape(str(spec))}:(\d+):(\d+): (.+)$", line)
        if found:
            out[(int(found.group(1)) - 6) // 2] = found.group(3)
    return out


def test_sandbox_escapes_are_refused_at_their_line(folder: Path) -> None:
    spec = sandbox_spec(folder, ESCAPES)
    started = time.monotonic()
    proc = capped_validate(spec)
    assert time.monotonic() - started < 30
    assert proc.returncode == 1
    found = problems_by_scene(proc, spec)
    missing = [ESCAPES[i] for i in range(len(ESCAPES)) if i not in found]
    assert missing == [], proc.stderr
    for leak in ("TOP SECRET", "root:", "env-secret-0b9f", "<module 'os'", "__builtins__"):
        assert leak not in proc.stderr + proc.stdout


def test_template_bombs_are_refused_quickly_in_little_memory(folder: Path) -> None:
    spec = sandbox_spec(folder, BOMBS)
    started = time.monotonic()
    proc = capped_validate(spec)
    elapsed = time.monotonic() - started
    assert proc.returncode == 1, proc.stdout
    found = problems_by_scene(proc, spec)
    missing = [BOMBS[i] for i in range(len(BOMBS)) if i not in found]
    assert missing == [], proc.stderr
    assert not [m for m in found.values() if "MemoryError" in m], found
    assert elapsed < 20, f"{elapsed:.1f} s"


# -- YAML bombs and oversized files, through the CLI with a memory cap -----------------------


def billion_laughs(levels: int = 9) -> str:
    lines = ['a0: &a0 "lol"']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return (
        "version: 1\nname: bomb\nvars:\n"
        + "".join(f"  {x}\n" for x in lines)
        + ("scenes:\n  - id: a\n    prompt: x\n    provider: preview\n")
    )


def string_bomb() -> str:
    """Few nodes, but a megabyte string referenced 5,000 times: gigabytes if ever printed."""
    refs = ", ".join(["*big"] * 5000)
    return (
        "version: 1\nname: bomb\n"
        f'vars:\n  big: &big "{"x" * 1_000_000}"\n'
        "defaults:\n  provider: runware\n"
        f"  options: {{junk: [{refs}]}}\n"
        "scenes:\n  - id: a\n    prompt: '{{ big }}'\n"
    )


def merge_bomb() -> str:
    lines = ["version: 1", "name: bomb", "vars:", "  m0: &m0 {k: v}"]
    for i in range(1, 18):
        lines.append(f"  m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}], k{i}: v}}")
    return "\n".join([*lines, "scenes:", "  - id: a", "    prompt: x", "    provider: preview"])


HUGE: dict[str, Any] = {
    "billion laughs": billion_laughs,
    "string alias bomb": string_bomb,
    "merge-key bomb": merge_bomb,
    "deep flow nesting": lambda: "version: 1\nname: x\nvars: " + "[" * 50_000 + "]" * 50_000,
    "deep block nesting": lambda: "".join("  " * i + "- \n" for i in range(3000)),
    "deep mapping nesting": lambda: "".join("  " * i + f"k{i}:\n" for i in range(3000)),
    "9 MB file": lambda: "# " + "x" * (9 * 1024 * 1024),
    "7 MB prompt": lambda: (
        "version: 1\nname: x\nscenes:\n  - id: a\n    prompt: " + "x" * (7 * 1024 * 1024)
    ),
    "a million template openers": lambda: (
        "version: 1\nname: x\ndefaults: {provider: preview}\nscenes:\n  - id: a\n    prompt: '"
        + "{{" * 1_000_000
        + "'\n"
    ),
    "a million scenes by foreach": lambda: (
        "version: 1\nname: x\ndefaults: {provider: preview}\nscenes:\n"
        "  - id: '{{ a }}-{{ b }}'\n    prompt: x\n"
        f"    foreach: {{a: {list(range(1000))}, b: {list(range(1000))}}}\n"
    ),
    "random bytes": lambda: os.urandom(1 << 20).decode("latin-1"),
}


ACCEPTED = {"merge-key bomb"}  # 2**17 merged pairs, bounded work, 18 small mappings


@pytest.mark.parametrize("name", HUGE)
def test_bombs_and_oversized_files_end_in_located_errors(name: str, folder: Path) -> None:
    # a folder of its own: storyboards of one name in one folder are refused (shared renders/)
    spec = folder / "huge" / name.replace(" ", "-") / "story.yaml"
    spec.parent.mkdir(parents=True, exist_ok=True)
    text = HUGE[name]()
    spec.write_bytes(text.encode("utf-8") if name != "random bytes" else text.encode("latin-1"))
    started = time.monotonic()
    proc = capped_validate(spec)
    elapsed = time.monotonic() - started
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert elapsed < 20, f"{elapsed:.1f} s"
    if name in ACCEPTED:  # what it expands to is a fine storyboard
        assert proc.returncode == 0 and proc.stdout.endswith("ok (1 scene)\n"), proc.stderr
        return
    assert proc.returncode == 1, proc.stdout[-500:]
    lines = proc.stderr.splitlines()
    assert re.match(r"^\d+ problems? found$", lines[-1]), lines[-3:]
    for line in lines[:-1]:
        assert line.startswith(f"{spec}:") and re.match(r"^.+:\d+:\d+: \S", line), line[:300]
        assert len(line) < 5000, f"an unbounded message of {len(line):,} characters"


def test_string_alias_bomb_cannot_blow_up_plan(folder: Path) -> None:
    """Where the expanded document would be serialised (fingerprints): bounded at load."""
    spec = folder / "string-bomb-plan.yaml"
    spec.write_text(string_bomb().replace("prompt: '{{ big }}'", "prompt: x"), encoding="utf-8")

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))

    proc = subprocess.run(
        [sys.executable, "-m", "hailuo_pipe", "plan", "--provider", "preview", str(spec)],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=cap,
    )
    assert "Traceback" not in proc.stderr and "MemoryError" not in proc.stderr, proc.stderr[-2000:]
    assert proc.returncode == 1 and re.search(r":\d+:\d+: .*expands to more than", proc.stderr)


def test_validate_json_output_of_a_hostile_file_is_valid_json(folder: Path) -> None:
    spec = folder / "json.yaml"
    spec.write_bytes(b'version: 1\nname: [\x01\xff\n  - "\\ud800"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "hailuo_pipe", "validate", "--json", str(spec)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    errors = json.loads(proc.stdout)["errors"]
    assert errors and all(e["line"] >= 1 and e["col"] >= 1 and e["message"] for e in errors)


def test_merge_keys_override_without_false_duplicates(folder: Path) -> None:
    text = """
version: 1
name: merged
x-base: &base {provider: preview, duration: 6}
defaults:
  <<: *base
  duration: 10
scenes:
  - id: a
    prompt: x
"""
    doc = yaml.safe_load(text)
    del doc["x-base"]  # the storyboard schema refuses unknown keys: keep the anchor in vars
    text = text.replace("x-base: &base", "vars:\n  base: &base")
    board, shown = validate_bytes(folder, text.encode())
    assert shown == [] and board.scenes[0].duration == 10  # the key written last wins
    twice = text.replace("  duration: 10", "  duration: 10\n  duration: 6")
    _, shown = validate_bytes(folder, twice.encode())
    assert shown == ["story.yaml:9:3: duplicate key 'duration'"]
