"""The user's guide runs: every ```python block and every ```bash block marked ``<!-- test -->`` of
docs/guide/*.md is executed, page by page, in a fresh temporary folder (see guide_snippets.py for the markers).

The pages are independent, so two run at a time (the machine has 2 cores; each page is mostly one process
waiting on another: imports, a few training steps, an evaluation).
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from guide_snippets import parse_blocks

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "guide"
RUNNER = Path(__file__).with_name("guide_snippets.py")
PAGES = sorted(p for p in GUIDE.glob("*.md") if any(b.action != "ignore" for b in parse_blocks(p.read_text())))
PAGE_TIMEOUT = 240


def run_page(page: Path, workdir: Path) -> subprocess.CompletedProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "PYTHONPATH": str(workdir)}
    return subprocess.run(
        [sys.executable, str(RUNNER), str(page)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=PAGE_TIMEOUT,
    )


@pytest.fixture(scope="module")
def page_runs(tmp_path_factory):
    """Start every page at once (two at a time); each test waits for its own."""
    pool = ThreadPoolExecutor(max_workers=2)
    longest_first = sorted(PAGES, key=lambda p: p.name != "own-data.md")
    runs = {page.name: pool.submit(run_page, page, tmp_path_factory.mktemp(page.stem)) for page in longest_first}
    yield runs
    pool.shutdown(wait=True, cancel_futures=True)


def failure_message(page: Path, done: subprocess.CompletedProcess) -> str:
    where = [line for line in done.stdout.splitlines() if line.startswith("SNIPPET FAILED")]
    head = where[-1] if where else f"{page.relative_to(REPO)}: the runner exited with code {done.returncode}"
    return f"{head}\n--- output (tail) ---\n{(done.stdout + done.stderr)[-6000:]}"


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_guide_page_runs(page, page_runs):
    done = page_runs[page.name].result()
    if done.returncode != 0:
        pytest.fail(failure_message(page, done), pytrace=False)


def test_guide_has_the_promised_pages():
    names = {p.name for p in GUIDE.glob("*.md")}
    index = (GUIDE / "README.md").read_text()
    for name in sorted(names - {"README.md"}):
        assert f"({name})" in index, f"docs/guide/README.md does not link {name}"
    assert len(PAGES) >= 5, f"expected runnable pages for data, views, extending and scale-out; got {PAGES}"


def test_a_failing_snippet_names_its_page_and_line(tmp_path):
    page = tmp_path / "broken.md"
    page.write_text(
        "# A page\n\n```python\nx = 1\n```\n\n<!-- test -->\n```bash\necho fine\n```\n\n"
        "```python\ny = 2\nraise ValueError('boom')\n```\n\n```bash\nfalse  # not marked: never runs\n```\n"
    )
    done = run_page(page, tmp_path / "work")
    assert done.returncode == 1
    assert f"SNIPPET FAILED {page}:13: python block" in done.stdout
    assert f'File "{page}", line 14' in done.stderr  # the traceback points into the page
    assert "fine" in done.stdout


def test_a_failing_bash_block_names_its_line(tmp_path):
    page = tmp_path / "broken.md"
    page.write_text(
        "<!-- file: data.txt -->\n```text\nhello\n```\n\n<!-- test -->\n```bash\ngrep -q bye data.txt\n```\n"
    )
    done = run_page(page, tmp_path / "work")
    assert done.returncode == 1
    assert f"SNIPPET FAILED {page}:8: bash block" in done.stdout
    assert (tmp_path / "work" / "data.txt").read_text() == "hello\n"
