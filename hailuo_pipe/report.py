"""`hailuo-pipe report`: a static HTML contact sheet of a storyboard and its renders.

One self-contained page (inline CSS, no script, no fonts or anything else from the network) that
works from file://. Every link in it is relative to the page, so the report folder can be moved
or archived together with the renders it shows. Thumbnails are small JPEGs in `thumbs/` beside
the page, made again only when missing or older than the frame they show.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from importlib import resources
from pathlib import Path
from urllib.parse import quote

import jinja2

from hailuo_pipe import media
from hailuo_pipe.errors import HailuoPipeError
from hailuo_pipe.plan import ACTIONS, Plan, Step
from hailuo_pipe.redact import redact
from hailuo_pipe.state.lockfile import Entry, Lockfile, atomic_write, now
from hailuo_pipe.storyboard.graph import Graph
from hailuo_pipe.storyboard.model import ImageInput, Scene, Storyboard

REPORT_NAME = "report.html"
THUMBS = "thumbs"
THUMB_WIDTH = 320


@dataclass(frozen=True)
class Link:
    """A frame handed from one scene to another, as the page draws it."""

    scene: str  # the other scene
    frame: str  # "first" | "last" of the source clip
    slot: str  # "image" (becomes the first frame) | "end_image" (becomes the last)


@dataclass
class Card:
    scene: Scene
    step: Step | None
    entry: Entry | None
    state: str
    clip: str | None = None  # relative URL of the clip, when the file is here
    clip_missing: bool = False  # the lockfile records a clip that is not on this disk
    thumbs: dict[str, str] = field(default_factory=dict)  # "first"/"last"/"input" -> URL
    inputs: list[Link] = field(default_factory=list)
    feeds: list[Link] = field(default_factory=list)
    input_text: str | None = None  # an image URL or a file that could not be shown

    @property
    def rendered(self) -> bool:
        return self.clip is not None


@dataclass(frozen=True)
class Node:
    """A scene in the frame-flow diagram."""

    id: str
    x: float
    rendered: bool
    y: float = 0.0


@dataclass(frozen=True)
class Edge:
    path: str  # SVG path data
    label: str
    label_x: float
    label_y: float
    source: str
    target: str


def write_report(
    board: Storyboard, lock: Lockfile, plan: Plan, out_dir: Path | None = None
) -> Path:
    """Write `report.html` (and its `thumbs/`) into `out_dir`; returns the page's path.

    `out_dir` defaults to the storyboard's render folder (`renders/NAME/` beside the spec).
    """
    out = (out_dir if out_dir is not None else board.render_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    base = board.path.parent
    cards = _cards(board, lock, plan, base, out)
    page = _template(_private(base)).render(
        board=board,
        spec_name=board.path.name,
        cards=cards,
        totals=_totals(board, lock, plan, cards),
        cut=_cut(board, lock, base, out),
        flow=_flow(cards),
        generated=now(),
    )
    dest = out / REPORT_NAME
    atomic_write(dest, _scrub(page).encode("utf-8"))
    # The temporary file behind the atomic write is private (0600); a report is meant to be
    # shared and served like the clips beside it.
    dest.chmod(0o644)
    return dest


# -- cards -------------------------------------------------------------------------------------


def _cards(board: Storyboard, lock: Lockfile, plan: Plan, base: Path, out: Path) -> list[Card]:
    steps = {s.scene.id: s for s in plan.steps}
    cards: dict[str, Card] = {}
    for scene in board.scenes:
        entry = lock.scenes.get(scene.id)
        card = Card(scene, steps.get(scene.id), entry, entry.state if entry else "not rendered")
        if entry is not None and entry.output is not None:
            clip = base / entry.output.path
            if clip.is_file():
                card.clip = _url(clip, out)
            else:
                card.clip_missing = True
        if entry is not None:
            for which in ("first", "last"):
                record = entry.frames.get(which)
                if record is not None:
                    thumb = _thumbnail(base / record.path, out, f"{scene.id}-{which}.jpg")
                    if thumb is not None:
                        card.thumbs[which] = thumb
        if card.clip is None:
            _input(card, scene.image, out)
        cards[scene.id] = card
    for scene in board.scenes:
        for slot in ("image", "end_image"):
            img: ImageInput | None = getattr(scene, slot)
            if img is None or img.ref is None or img.ref.scene not in cards:
                continue
            cards[scene.id].inputs.append(Link(img.ref.scene, img.ref.frame, slot))
            cards[img.ref.scene].feeds.append(Link(scene.id, img.ref.frame, slot))
    return list(cards.values())


def _input(card: Card, image: ImageInput | None, out: Path) -> None:
    """What the scene starts from, shown where its clip will be while it is not rendered."""
    if image is None or image.ref is not None:
        return
    if image.url is not None:
        # Never loaded: the page makes no network requests. The address is shown as text.
        card.input_text = image.url
        return
    assert image.path is not None
    thumb = _thumbnail(image.path, out, f"{card.scene.id}-input.jpg")
    if thumb is not None:
        card.thumbs["input"] = thumb
    else:
        card.input_text = image.path.name


def _thumbnail(src: Path, out: Path, name: str, width: int = THUMB_WIDTH) -> str | None:
    """The URL of a thumbnail of `src`, made only when missing or older than its source."""
    dest = out / THUMBS / name
    try:
        source_time = src.stat().st_mtime
    except OSError:
        return None
    try:
        if not dest.is_file() or dest.stat().st_mtime < source_time:
            media.thumbnail(src, dest, width=width)
    except (HailuoPipeError, OSError, ValueError):
        # A damaged frame costs one picture, never the whole report.
        return None
    return _url(dest, out)


def _url(target: Path, out: Path) -> str:
    """A link from the page to `target` that survives moving the folder with its renders."""
    rel = os.path.relpath(target.resolve(), out)
    return quote(Path(rel).as_posix())


# -- header ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Totals:
    scenes: int
    rendered: int
    seconds: int
    rendered_seconds: int
    spent: Decimal
    to_spend: Decimal
    actions: list[tuple[str, int]]
    up_to_date: bool


def _totals(board: Storyboard, lock: Lockfile, plan: Plan, cards: Iterable[Card]) -> Totals:
    cards = list(cards)
    # Every recorded cost counts, also of scenes since removed from the storyboard: it was spent.
    spent = sum(
        (Decimal(str(e.cost)) for e in lock.scenes.values() if e.cost is not None), Decimal(0)
    )
    counts: dict[str, int] = {}
    for step in plan.steps:
        counts[step.action] = counts.get(step.action, 0) + 1
    return Totals(
        scenes=len(board.scenes),
        rendered=sum(1 for c in cards if c.rendered),
        seconds=sum(s.duration for s in board.scenes),
        rendered_seconds=sum(c.scene.duration for c in cards if c.rendered),
        spent=spent,
        to_spend=plan.cost,
        actions=sorted(counts.items(), key=lambda kv: ACTIONS.index(kv[0])),
        up_to_date=plan.up_to_date,
    )


@dataclass(frozen=True)
class CutView:
    path: str  # as the storyboard names it
    url: str | None  # None while not assembled (or not on this disk)
    poster: str | None  # its first frame, so the player is not a black box before it plays
    sequence: tuple[str, ...]


def _cut(board: Storyboard, lock: Lockfile, base: Path, out: Path) -> CutView | None:
    if board.output is None:
        return None
    url = poster = None
    if lock.cut is not None and lock.cut.path == board.output.path:
        file = base / lock.cut.path
        if file.is_file():
            url = _url(file, out)
            poster = _thumbnail(file, out, "cut.jpg", THUMB_WIDTH * 2)
    return CutView(board.output.path, url, poster, board.output.sequence)


# -- frame flow diagram ------------------------------------------------------------------------

# Scenes in columns by depth (a scene stands one column right of the deepest scene it takes a
# frame from), each hand-over a curve from its source's right side into its target's left
# side, labelled just before the target: above the curve for a first frame, below it for a
# last one. A scene takes at most those two frames and rows are further apart than two label
# lines, so no label can cover another at any size; a wide storyboard scrolls sideways.
NODE_W, NODE_H = 120.0, 28.0
COL_GAP = 230.0  # between column starts: a node and the room for its incoming labels
ROW_GAP = 48.0
MARGIN = 16.0
SLOT_DY = {"image": -6.0, "end_image": 6.0}  # where a hand-over enters its target


@dataclass(frozen=True)
class Flow:
    width: float
    height: float
    top: float  # y of the view's upper edge
    nodes: list[Node]
    edges: list[Edge]


def layers(cards: list[Card]) -> dict[str, int]:
    """Each scene's column: 0 for a scene that takes no frame, else one more than its deepest
    source. Computed in dependency order, so a long chain needs no recursion."""
    needs = {c.scene.id: [link.scene for link in c.inputs] for c in cards}
    column: dict[str, int] = {}
    for scene_id in Graph.of(c.scene for c in cards).topological():
        column[scene_id] = 1 + max((column[d] for d in needs[scene_id]), default=-1)
    return column


def _flow(cards: list[Card]) -> Flow | None:
    if not any(c.inputs for c in cards):
        return None
    column = layers(cards)
    order = {c.scene.id: i for i, c in enumerate(cards)}
    row: dict[str, int] = {}
    for depth in range(max(column.values()) + 1):
        here = [c for c in cards if column[c.scene.id] == depth]
        # beside the scenes they take from, to keep curves short and uncrossed where possible
        here.sort(
            key=lambda c: (
                sum(row[link.scene] for link in c.inputs) / len(c.inputs) if c.inputs else 0.0,
                order[c.scene.id],
            )
        )
        row.update({c.scene.id: i for i, c in enumerate(here)})
    x = {sid: MARGIN + NODE_W / 2 + column[sid] * COL_GAP for sid in column}
    y = {sid: MARGIN + 16 + NODE_H / 2 + row[sid] * ROW_GAP for sid in column}
    edges = []
    for card in cards:
        target = card.scene.id
        for link in card.inputs:
            x0, y0 = x[link.scene] + NODE_W / 2, y[link.scene]
            x1, y1 = x[target] - NODE_W / 2, y[target] + SLOT_DY[link.slot]
            bend = max(40.0, (x1 - x0) / 2)
            path = f"M{x0:.0f},{y0:.0f} C{x0 + bend:.0f},{y0:.0f} {x1 - bend:.0f},{y1:.0f} "
            path += f"{x1:.0f},{y1:.0f}"
            label = f"{link.frame} → {'first' if link.slot == 'image' else 'last'}"
            label_y = y1 - 5 if link.slot == "image" else y1 + 13
            edges.append(Edge(path, label, x1 - 6, label_y, link.scene, target))
    nodes = [Node(c.scene.id, x[c.scene.id], c.rendered, y[c.scene.id]) for c in cards]
    width = 2 * MARGIN + NODE_W + max(column.values()) * COL_GAP
    height = 2 * MARGIN + 16 + NODE_H + max(row.values()) * ROW_GAP
    return Flow(width, height, 0.0, nodes, edges)


# -- rendering -----------------------------------------------------------------------------------


def _money(value: Decimal | float | None) -> str:
    if value is None:
        return "—"
    return f"${Decimal(str(value)):.2f}"


def _private(base: Path) -> Callable[[str], str]:
    """Messages (error, reason) name files by absolute path; the page shows them relative to
    the spec's folder, or to ~, so it gives away neither the machine's layout nor $HOME."""
    prefixes = [(str(base) + os.sep, ""), (str(base), ".")]
    home = os.environ.get("HOME", "")
    if len(home) > 1:
        prefixes.append((home.rstrip(os.sep) + os.sep, "~" + os.sep))

    def private(text: str) -> str:
        for prefix, short in prefixes:
            text = text.replace(prefix, short)
        return text

    return private


def _template(private: Callable[[str], str]) -> jinja2.Template:
    env = jinja2.Environment(
        # Prompts, reasons and error messages are user or provider text: always escaped.
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["money"] = _money
    env.filters["private"] = private
    text = resources.files(__package__).joinpath("report.html.j2").read_text(encoding="utf-8")
    return env.from_string(text)


def _scrub(page: str, environ: Mapping[str, str] | None = None) -> str:
    """Blank out the value of any secret-looking environment variable that reached the page."""
    return redact(page, environ=environ)
