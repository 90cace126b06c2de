"""Every Python code block and console session in the README and docs/ runs as written."""

from __future__ import annotations

import os
import re
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

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
ANY_BLOCK = re.compile(r"^```(python|console)\n(.*?)^```", re.MULTILINE | re.DOTALL)
# A console block's shown output must be what the command prints, but for what changes from
# run to run: times and durations.
VARYING = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?|\d+(\.\d+)? ms")


def _console_blocks() -> list[Any]:
    """Each console block with the python blocks before it in its document (its setup)."""
    found = []
    for doc in DOCS:
        setup: list[str] = []
        for n, match in enumerate(ANY_BLOCK.finditer(doc.read_text("utf-8"))):
            if match[1] == "python":
                setup.append(match[2])
            else:
                found.append(pytest.param(list(setup), match[2], id=f"{doc.name}:{n}"))
    return found


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


@pytest.mark.parametrize(("setup", "session"), _console_blocks())
async def test_docs_console_session_prints_what_it_shows(
    setup: list[str], session: str, tmp_path: Path
) -> None:
    """Each ``$ command`` of a console block exits 0 and prints the lines shown under it.

    The python blocks before it in its document run first, in the same directory (they make
    the store the commands look at); times and durations may differ from those shown, and a
    ``...`` line stands for any lines. The directory has ``examples/`` and ``.venv/``, as a
    clone has after the README's first command.
    """
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)
    with anyio.fail_after(120):
        for code in setup:
            await _run_block(code, tmp_path)
        commands: list[tuple[str, list[str]]] = []
        for line in session.splitlines():
            if line.startswith("$ "):
                commands.append((line[2:], []))
            else:
                commands[-1][1].append(line)
        for command, shown in commands:
            done = await anyio.run_process(
                ["bash", "-c", command], cwd=tmp_path, env=env, check=False
            )
            assert done.returncode == 0, f"{command}: {done.stderr.decode()}"
            printed = [_steady(line) for line in done.stdout.decode().splitlines()]
            expected = [_steady(line) for line in shown]
            assert _matches(printed, expected), f"{command} printed:\n" + "\n".join(printed)


def _steady(line: str) -> str:
    return " ".join(VARYING.sub("<varies>", line).split())


def _matches(printed: list[str], expected: list[str]) -> bool:
    """Whether ``printed`` is ``expected``, each ``...`` line standing for any lines."""
    if not expected:
        return not printed
    if expected[0] == "...":
        return any(_matches(printed[i:], expected[1:]) for i in range(len(printed) + 1))
    return bool(printed) and printed[0] == expected[0] and _matches(printed[1:], expected[1:])
