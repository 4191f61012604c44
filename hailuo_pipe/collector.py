"""The cyclic garbage collector, paused while a command loads and plans.

A command builds a few hundred thousand objects that live until it ends (the storyboard, the
lockfile, the plan) and almost no cycles: collecting while they are built only walks them again
and again (a tenth of a 10,000-scene no-op even at a threshold of 50,000). The command line
pauses the collector from its start; a phase that may run for long (a render, a cut, a cache
transfer) resumes it, over only what is made from then on. A library caller, who never paused
it, is left as it was.
"""

from __future__ import annotations

import gc

_paused = False


def pause() -> None:
    global _paused
    gc.disable()
    _paused = True


def resume() -> None:
    """Collect again, leaving out everything built so far (`gc.freeze`): it lives until the
    command ends."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.set_threshold(50_000)  # still few cycles: a render's events and results
        gc.enable()
