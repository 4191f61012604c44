"""A corpus of broken storyboards: each names the message and position it must produce.

Each file in corpus/broken ends with one or more `# expect: LINE:COL: text` lines; validation
must report a problem at that position whose message contains the text.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hailuo_pipe.validate import check

BROKEN = sorted((Path(__file__).parent / "corpus" / "broken").glob("*.yaml"))
EXPECT = re.compile(r"^# expect: (\d+):(\d+): (.+)$", re.MULTILINE)


def test_corpus_is_large_enough() -> None:
    assert len(BROKEN) >= 30


@pytest.mark.parametrize("path", BROKEN, ids=[p.stem for p in BROKEN])
def test_broken_storyboard_is_refused_with_located_message(path: Path) -> None:
    expected = EXPECT.findall(path.read_text(encoding="utf-8"))
    assert expected, f"{path.name} has no '# expect: LINE:COL: text' line"
    _, problems = check(path, display=path.name)
    assert problems, f"{path.name} was accepted"
    shown = [str(p) for p in problems]
    for line, col, text in expected:
        wanted = f"{path.name}:{line}:{col}: "
        assert any(s.startswith(wanted) and text in s for s in shown), (
            f"expected {wanted}…{text}… among:\n" + "\n".join(shown)
        )
