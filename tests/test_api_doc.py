"""docs/api.md is run: its examples are what the library does (doctest, on that file only)."""

from __future__ import annotations

import doctest
from pathlib import Path

API = Path(__file__).parents[1] / "docs" / "api.md"


def test_the_api_page_examples_run_as_written() -> None:
    got = doctest.testfile(
        str(API),
        module_relative=False,
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
        verbose=False,
    )
    assert got.attempted >= 20  # the page was read, not skipped
    assert got.failed == 0
