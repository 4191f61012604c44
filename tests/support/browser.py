"""Drive headless Chromium without any dependency: command-line modes only, no DevTools socket.

`--dump-dom` prints the DOM once the page's virtual time budget has run out, so a check script
injected into a copy of the page writes its findings into the DOM as JSON and the test reads
them back; `--screenshot` writes a PNG. Both run a fresh throwaway profile, offline.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = (
    "--headless",
    "--no-sandbox",  # root in a container has no user namespace for the sandbox
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
)
CHECK_ID = "__report_check"

# Runs in a copy of the report, next to it so every relative link resolves the same. It waits
# until each video has its metadata or an error (or 4 s of page time pass), then writes JSON.
CHECK_SCRIPT = """
<script>
(() => {
  const imgs = [...document.images];
  imgs.forEach(i => { i.loading = "eager"; });  // lazy images below the fold never load else
  const started = performance.now();
  function settled(v) { return v.error !== null || v.readyState >= 1; }
  function report() {
    const videos = [...document.querySelectorAll("video")];
    const waiting = videos.some(v => !settled(v)) || imgs.some(i => !i.complete);
    if (waiting && performance.now() - started < 4000) { setTimeout(report, 50); return; }
    const out = {
      cards: [...document.querySelectorAll("article.card")].map(c => c.dataset.scene),
      placeholders: [...document.querySelectorAll("article.card .placeholder")].length,
      images: imgs.map(i => ({src: i.getAttribute("src"), complete: i.complete,
                              naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight})),
      videos: videos.map(v => ({src: v.getAttribute("src"), readyState: v.readyState,
                                error: v.error && {code: v.error.code, message: v.error.message},
                                videoWidth: v.videoWidth, videoHeight: v.videoHeight,
                                duration: v.duration})),
      canPlayH264: document.createElement("video").canPlayType('video/mp4; codecs="avc1.640028"'),
      userAgent: navigator.userAgent,
    };
    const pre = document.createElement("pre");
    pre.id = "__ID__";
    pre.textContent = JSON.stringify(out);
    document.body.appendChild(pre);
  }
  if (document.readyState === "complete") report(); else addEventListener("load", report);
})();
</script>
""".replace("__ID__", CHECK_ID)


class BrowserError(RuntimeError):
    pass


def find_chromium() -> str | None:
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _run(binary: str, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        # No proxy or API key of the test environment is of any use to an offline page.
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
        proc = subprocess.run(
            [binary, *FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    if proc.returncode != 0:
        raise BrowserError(f"{binary} exited with {proc.returncode}: {proc.stderr[-2000:]}")
    return proc


def check_page(binary: str, page: Path, *, budget_ms: int = 8000, timeout: float = 90) -> Any:
    """Load `page` over file:// and return what the check script found (see CHECK_SCRIPT)."""
    text = page.read_text(encoding="utf-8")
    if "</body>" not in text:
        raise BrowserError(f"{page} has no </body> to put the check script before")
    wrapper = page.with_name(f".{page.stem}.check.html")
    wrapper.write_text(text.replace("</body>", CHECK_SCRIPT + "</body>", 1), encoding="utf-8")
    try:
        proc = _run(
            binary,
            [f"--virtual-time-budget={budget_ms}", "--dump-dom", wrapper.resolve().as_uri()],
            timeout,
        )
    finally:
        wrapper.unlink(missing_ok=True)
    start = proc.stdout.find(f'<pre id="{CHECK_ID}">')
    if start < 0:
        raise BrowserError(f"the check script wrote nothing; stderr: {proc.stderr[-2000:]}")
    start = proc.stdout.index(">", start) + 1
    end = proc.stdout.index("</pre>", start)
    return json.loads(html.unescape(proc.stdout[start:end]))


def screenshot(
    binary: str,
    page: Path,
    dest: Path,
    *,
    size: tuple[int, int] = (1280, 1600),
    timeout: float = 90.0,
) -> Path:
    """A PNG of the page's first `size` pixels, after its images and video posters loaded."""
    _run(
        binary,
        [
            f"--window-size={size[0]},{size[1]}",
            "--virtual-time-budget=5000",
            f"--screenshot={dest.resolve()}",
            page.resolve().as_uri(),
        ],
        timeout,
    )
    if not dest.is_file():
        raise BrowserError(f"no screenshot was written to {dest}")
    return dest


def evaluate(
    binary: str, page: Path, body: str, *, budget_ms: int = 5000, timeout: float = 90
) -> Any:
    """Run `body`, the body of a JavaScript function returning a JSON-able value, in `page`
    once it has loaded, and return that value (the page is loaded over file:// like the
    user's, from a copy beside it)."""
    script = (
        "<script>addEventListener('load', () => { const out = (() => {" + body + "})();"
        " const pre = document.createElement('pre'); pre.id = '" + CHECK_ID + "';"
        " pre.textContent = JSON.stringify(out); document.body.appendChild(pre); });</script>"
    )
    text = page.read_text(encoding="utf-8")
    wrapper = page.with_name(f".{page.stem}.eval.html")
    wrapper.write_text(text.replace("</body>", script + "</body>", 1), encoding="utf-8")
    try:
        proc = _run(
            binary,
            [f"--virtual-time-budget={budget_ms}", "--dump-dom", wrapper.resolve().as_uri()],
            timeout,
        )
    finally:
        wrapper.unlink(missing_ok=True)
    start = proc.stdout.find(f'<pre id="{CHECK_ID}">')
    if start < 0:
        raise BrowserError(f"the script wrote nothing; stderr: {proc.stderr[-2000:]}")
    start = proc.stdout.index(">", start) + 1
    return json.loads(html.unescape(proc.stdout[start : proc.stdout.index("</pre>", start)]))
