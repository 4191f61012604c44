"""`python -m hailuo_pipe` and the `hailuo-pipe` command."""

import sys


def entry() -> None:
    from hailuo_pipe import collector

    collector.pause()  # resumed by what runs for long
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
