"""`python -m hailuo_pipe`: the command line."""

from .cli import main

main()
