"""`python -m hailuo_pipe` and the `hailuo-pipe` command."""

import sys


def entry() -> None:
    try:
        from .cli import main
    except KeyboardInterrupt:  # Ctrl-C while modules load: nothing has happened yet
        sys.stderr.write("Interrupted before anything was done.\n")
        sys.exit(130)
    main()


if __name__ == "__main__":
    entry()
