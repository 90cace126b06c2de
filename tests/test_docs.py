"""Every Python code block in the README and docs/ runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
BLOCKS = [
    pytest.param(match[1], id=f"{doc.name}:{n}")
    for doc in DOCS
    for n, match in enumerate(BLOCK.finditer(doc.read_text("utf-8")))
]


def test_the_readme_has_a_runnable_example() -> None:
    """The README shows code, so this suite has something to run."""
    assert any("README" in str(p.id) for p in BLOCKS)


@pytest.mark.parametrize("code", BLOCKS)
def test_docs_code_block_runs(code: str, tmp_path: Path) -> None:
    """A documented snippet exits 0 when run on its own."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr
