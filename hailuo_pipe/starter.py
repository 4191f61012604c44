"""`hailuo-pipe init`: a commented starter storyboard and the .gitignore entries it needs.

The storyboard renders offline with the preview provider (free, no key), and shows the two
things a newcomer reaches for first: a chain (a scene that starts on another's last frame) and
a `foreach` (many similar scenes from one). Nothing existing is ever overwritten.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hailuo_pipe.errors import InitRefused

STORYBOARD = """\
# A starter storyboard. Rehearse it offline, for free (the preview provider draws an animatic):
#   hailuo-pipe validate {spec}    # every problem with file:line:col; nothing is spent
#   hailuo-pipe plan {spec}        # what a render would do, why, and what it would cost
#   hailuo-pipe render {spec}      # render what is out of date; a rerun renders nothing
#   hailuo-pipe report {spec}      # an HTML contact sheet
# When it reads well, pick a paid provider (hailuo-pipe providers lists them and their
# prices), set its key (e.g. WAVESPEED_API_KEY) and render again: `plan` shows the cost first.
# Commit this file and the .lock file a render writes beside it; renders/ is ignored by git.
version: 1
name: {name}                  # names the render folder: renders/{name}/
vars:                         # template variables: {{{{ city }}}} in a prompt; --var city=Oslo
  city: Ice Harbor
  look: natural cold light, premium trailer grade
defaults:                     # what every scene takes unless it says otherwise
  provider: preview           # preview | wavespeed | gmicloud | minimax | runware | apiframe
  duration: 6                 # seconds: 6 or 10
  resolution: 768p            # 512p | 768p | 1080p
scenes:
  - id: dawn
    prompt: "[Aerial dive] Over {{{{ city }}}} at dawn, ice sheets cracking. {{{{ look }}}}"
    # image: assets/first-frame.jpg      # a first frame: a file beside this one, or a URL
  - id: escape                          # a chain: starts on the exact last frame of dawn
    prompt: "[Tracking shot] Tugboats surge through {{{{ city }}}}'s channels. {{{{ look }}}}"
    image: {{from: dawn, frame: last}}
  - id: "harbor-{{{{ time }}}}"             # foreach: one scene per value, ids from the values
    foreach:
      time: [noon, dusk]
    prompt: "[Wide shot] {{{{ city }}}} harbor at {{{{ time }}}}. {{{{ look }}}}"
output:                       # optional: the cut, assembled once its scenes are rendered
  path: renders/{name}.mp4
  sequence: [dawn, escape, harbor-noon, harbor-dusk]
"""

GITIGNORE = (
    "# hailuo-pipe: clips are large and come back from the lockfile; commit the .lock files",
    "renders/",
    "# the render lock of a running render (it holds only a pid)",
    ".*.lock.pid",
)


@dataclass(frozen=True)
class Started:
    storyboard: Path
    gitignore: Path
    ignore_added: tuple[str, ...]  # the entries .gitignore lacked and now has


def starter_text(spec: str, name: str) -> str:
    return STORYBOARD.format(spec=spec, name=name)


def init(path: Path) -> Started:
    """Write a starter storyboard at `path` (a .yaml file, or a folder to hold
    `storyboard.yaml`) and add the entries .gitignore beside it lacks. Refuses, writing nothing,
    when the storyboard exists."""
    spec = path / "storyboard.yaml" if path.is_dir() or path.suffix == "" else path
    if spec.suffix not in (".yaml", ".yml"):
        raise InitRefused(f"{spec}: a storyboard is a .yaml file")
    if spec.exists() or spec.is_symlink():
        raise InitRefused(f"{spec} exists; init never overwrites a file (nothing was written)")
    spec.parent.mkdir(parents=True, exist_ok=True)
    name = "".join(c if c.isalnum() or c in "-_" else "-" for c in spec.stem) or "storyboard"
    with spec.open("x", encoding="utf-8") as out:  # "x": a file created meanwhile is not lost
        out.write(starter_text(spec.name, name))
    ignore = spec.parent / ".gitignore"
    return Started(spec, ignore, _add_ignores(ignore))


def _add_ignores(ignore: Path) -> tuple[str, ...]:
    """Append what .gitignore lacks; what it holds stays as it was."""
    have = ignore.read_text(encoding="utf-8").splitlines() if ignore.exists() else []
    missing = [line for line in GITIGNORE if line not in have]
    if not any(not line.startswith("#") for line in missing):
        return ()
    # a blank line after existing entries (and the newline a last line may lack)
    prefix = "" if not have else "\n" if ignore.read_bytes().endswith(b"\n") else "\n\n"
    with ignore.open("a", encoding="utf-8") as out:
        out.write(prefix + "\n".join(missing) + "\n")
    return tuple(line for line in missing if not line.startswith("#"))
