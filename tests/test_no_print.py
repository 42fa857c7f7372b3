"""Library code logs, only the command line prints.

Everything under ``sim/`` except ``sim/cli.py`` reports progress through
``logging.getLogger(__name__)``; the CLI installs the handler that shows those lines.
A ``print`` in library code (a call, or ``print`` passed on as a default callback)
would write to the terminal of whoever imports it: a notebook, a worker process, a test.
"""

from __future__ import annotations

import ast
from pathlib import Path

SIM = Path(__file__).resolve().parents[1] / "sim"
TERMINAL = {SIM / "cli.py"}  # the one module that talks to the terminal


def _prints(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [
        f"{path.relative_to(SIM.parent)}:{node.lineno}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Name) and node.id == "print"
    ]


def test_library_code_does_not_print() -> None:
    found = [
        hit for path in sorted(SIM.rglob("*.py")) if path not in TERMINAL for hit in _prints(path)
    ]
    assert not found, f"print in library code (log instead): {', '.join(found)}"
