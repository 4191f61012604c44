"""`python -m hailuo_pipe` and the `hailuo-pipe` command."""

import gc
import sys


def entry() -> None:
    # A rerun of a large storyboard builds a few hundred thousand objects that live until the
    # process ends (the spec, the lockfile, the plan) and few cycles; at the default threshold
    # of 700 the collector ran over a hundred times in a 1,000-scene no-op, a sixth of its time.
    gc.set_threshold(50_000)
    try:
        from hailuo_pipe.cli import main
    except KeyboardInterrupt:  # Ctrl-C while modules load: nothing has happened yet
        sys.stderr.write("Interrupted before anything was done.\n")
        sys.exit(130)
    # one name whichever way it was started: usage lines, and the completion variable
    # _HAILUO_PIPE_COMPLETE, are those of `hailuo-pipe`
    main(prog_name="hailuo-pipe")


if __name__ == "__main__":
    entry()
