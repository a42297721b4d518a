"""Instructions counted inside `operator.call` by callgrind: the shared runner of the
in-process instruction benches (`bench.decision_instructions`,
`bench.response_head_instructions`, `bench.rate_headers_instructions`).

Each bench re-runs its own file as a child under `valgrind --tool=callgrind
--toggle-collect=_operator_call` and does its counted work inside `operator.call`, so the
total is that work's instructions alone (imports and warm-up are outside it). Counts do
not depend on the machine's load.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

__all__ = ["operator_call_instructions"]


def operator_call_instructions(child_args: list[str], env: Mapping[str, str] | None = None) -> int:
    """Instructions executed inside `operator.call` while `python child_args...` runs
    under callgrind (`env`: extra environment variables for the child)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--toggle-collect=_operator_call",
                f"--callgrind-out-file={out}",
                sys.executable,
                *child_args,
            ],
            check=True,
            capture_output=True,
            env=None if env is None else {**os.environ, **env},
        )
        for line in out.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError("no totals in the callgrind output")
