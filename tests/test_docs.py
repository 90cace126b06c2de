"""Every Python code block in the README and docs/ runs as written."""

from __future__ import annotations

import os
import re
import sys
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import pytest

from tests.postgres import fresh_schema_url

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


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
async def test_docs_code_block_runs(code: str, tmp_path: Path) -> None:
    """A documented snippet exits 0 when run on its own.

    A block that starts with ``# needs: postgresql`` gets a fresh schema on the test server
    through ``KEYED_ACTORS_POSTGRES`` (and is skipped, or fails with CI=true, without one).
    """
    with anyio.fail_after(120):
        await _run_block(code, tmp_path)


async def _run_block(code: str, tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        env = dict(os.environ)
        if code.startswith("# needs: postgresql"):
            env["KEYED_ACTORS_POSTGRES"] = await stack.enter_async_context(fresh_schema_url("docs"))
        done = await anyio.run_process(
            [sys.executable, "-c", code], cwd=tmp_path, env=env, check=False
        )
    assert done.returncode == 0, done.stderr.decode()
