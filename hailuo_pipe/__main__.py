"""`python -m hailuo_pipe`: the command line."""

import sys

try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl-C while modules load: nothing has happened yet
    sys.stderr.write("Interrupted before anything was done.\n")
    sys.exit(130)

main()
