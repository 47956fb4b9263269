"""Extract and run the code blocks of a Markdown page of the user's guide, in order, in the current folder.

Which blocks run (the HTML comment sits on the line just above the fence, blank lines allowed in between):

- a ```python block runs, unless marked ``<!-- skip -->``; each block gets a fresh namespace (so every snippet is
  self-contained, as a reader would paste it) but they share one process, so torch is imported once per page;
- a ```bash block runs only when marked ``<!-- test -->`` (``bash -euo pipefail``);
- any block marked ``<!-- file: NAME -->`` (a recipe, a plugin module) is written to ``NAME`` instead of run.

A failing block stops the page: the runner prints ``<page>:<line>: ...`` (the block's first line in the page;
tracebacks of Python blocks show page line numbers too) and exits 1.

    python tests/guide/guide_snippets.py docs/guide/extending.md   # run in an empty temporary folder
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

FENCE = re.compile(r"^```([A-Za-z0-9_+-]*)\s*$")
MARKER = re.compile(r"^<!--\s*(test|skip|file:\s*(?P<file>[^\s]+))\s*-->\s*$")


@dataclass
class Block:
    """One fenced block: its language, its code, the page line of its first code line, and its marker."""

    lang: str
    code: str
    line: int
    marker: str | None = None  # "test", "skip" or "file"
    file: str | None = None

    @property
    def action(self) -> str:
        """``"write"``, ``"python"``, ``"bash"`` or ``"ignore"``."""
        if self.marker == "file":
            return "write"
        if self.lang == "python" and self.marker != "skip":
            return "python"
        if self.lang == "bash" and self.marker == "test":
            return "bash"
        return "ignore"


def parse_blocks(text: str) -> list[Block]:
    """The fenced blocks of a Markdown text, with the marker comment that precedes each."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        start = i
        i += 1
        while i < len(lines) and lines[i].rstrip() != "```":
            i += 1
        if i == len(lines):
            raise ValueError(f"line {start + 1}: unclosed code fence")
        block = Block(match.group(1).lower(), "\n".join(lines[start + 1 : i]) + "\n", start + 2)
        j = start - 1
        while j >= 0 and not lines[j].strip():
            j -= 1
        marker = MARKER.match(lines[j].strip()) if j >= 0 else None
        if marker:
            block.marker = "file" if marker.group("file") else marker.group(1)
            block.file = marker.group("file")
        blocks.append(block)
        i += 1
    return blocks


def run_python(block: Block, page: str) -> None:
    # Leading newlines put the code at its page line, so tracebacks point into the Markdown page.
    code = compile("\n" * (block.line - 1) + block.code, page, "exec")
    exec(code, {"__name__": "__main__", "__file__": page})  # noqa: S102  (our own documentation)


def run_bash(block: Block, page: str, timeout: float) -> None:
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", block.code], timeout=timeout)
    if done.returncode:
        raise RuntimeError(f"bash block exited with code {done.returncode}")


REPO = Path(__file__).resolve().parents[2]


def display_name(page: Path) -> str:
    """``docs/guide/x.md`` for pages of this repository, the path as given otherwise."""
    try:
        return str(page.resolve().relative_to(REPO))
    except ValueError:
        return str(page)


def run_page(page: Path, timeout: float = 300.0) -> int:
    """Run every runnable block of ``page`` in the current folder; 0 when all pass, 1 at the first failure."""
    name = display_name(page)
    for block in parse_blocks(page.read_text()):
        action = block.action
        if action == "ignore":
            continue
        print(f"--- {name}:{block.line}: {action} {block.file or ''}".rstrip(), flush=True)
        start = time.perf_counter()
        try:
            if action == "write":
                Path(block.file).parent.mkdir(parents=True, exist_ok=True)
                Path(block.file).write_text(block.code)
            elif action == "python":
                run_python(block, name)
            else:
                run_bash(block, name, timeout)
        except BaseException as err:  # noqa: BLE001  (SystemExit from a snippet is a failure too)
            if isinstance(err, SystemExit) and not err.code:
                continue
            traceback.print_exc()
            print(f"SNIPPET FAILED {name}:{block.line}: {action} block: {err!r}", flush=True)
            return 1
        print(f"--- {name}:{block.line}: done in {time.perf_counter() - start:.1f} s", flush=True)
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: guide_snippets.py PAGE.md  (runs in the current folder)", file=sys.stderr)
        return 2
    # Tools that snippets call (multiview, torchrun) live next to this interpreter.
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    sys.path.insert(0, os.getcwd())  # snippets import modules that earlier blocks wrote here
    return run_page(Path(argv[0]).resolve())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
