"""The README's first command as a new user runs it, in a fresh virtual environment.

SLOW (about 30 s, most of it `pip install`): one test, on purpose. It creates a new
venv, installs the checkout into it with plain `pip install -e .` (no dev extras, as the
README says; pip run from the test's own environment, see the test), checks that
`policy-engine prop` runs there, runs `gateway quickstart` in an empty directory, then
pastes the `curl` command and the Python SDK snippet it printed, exactly as printed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import IO

import pytest
from proxy_test_servers import free_port

from proxy.config import GatewayConfig
from proxy.mock_provider import mock_reply
from proxy.quickstart import banner

REPO = Path(__file__).resolve().parents[2]
FIRST_COMMAND = (
    "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/gateway quickstart"
)
HELLO = mock_reply("chat.completions", {"messages": [{"role": "user", "content": "Hello!"}]})


def _shell_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", (REPO / "README.md").read_text(), re.S)


def _read_banner(stdout: IO[str], server: subprocess.Popen[str]) -> str:
    """The quickstart's stdout up to its last line, `Serving on …`."""
    lines: list[str] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = stdout.readline()
        if not line:
            raise AssertionError(f"quickstart exited ({server.wait()}): {''.join(lines)}")
        lines.append(line)
        if line.startswith("Serving on "):
            return "".join(lines)
    raise AssertionError("no `Serving on` line within 120 s")


def _indented_block(banner: str, after: str) -> str:
    """The indented lines following the line that starts with `after`, dedented."""
    rest = banner.split(after, 1)[1].split("\n", 1)[1].lstrip("\n")
    block = re.match(r"((?:    .*\n)+)", rest)
    assert block is not None, banner
    return textwrap.dedent(block.group(1))


def _until_answered(run: list[str], deadline: float) -> subprocess.CompletedProcess[str]:
    """Run the pasted command until the server answers it (it may still be starting)."""
    while True:
        done = subprocess.run(run, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode == 0 or time.monotonic() > deadline:
            return done
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl, as the README does")
def test_readme_first_command_in_a_fresh_venv(tmp_path: Path) -> None:
    blocks = _shell_blocks()
    assert blocks[0].strip() == FIRST_COMMAND
    assert (
        blocks[1].strip().startswith("python3 -m venv .venv && .venv/bin/pip install -e '.[dev]'")
    )
    venv = tmp_path / "venv"
    # The venv gets no pip of its own and this environment's pip installs into it
    # (`--python`), without byte-compiling what it installs: the same packages, the
    # checkout's declared dependencies and nothing else, for about a third less CPU
    # (ensurepip alone took ~6 s, compiling ~7 s). A dependency missing from
    # pyproject's non-dev list is still missing there, and `prop` or the quickstart fails.
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    install = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python")),
            *("install", "-q", "--no-compile", "-e", str(REPO)),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert install.returncode == 0, install.stderr
    # The policy tooling works after the plain install too (`prop` needs hypothesis).
    prop = subprocess.run(
        [
            *(str(venv / "bin" / "policy-engine"), "prop", "policies/", "--max-examples", "10"),
            *("--seed", "1", "--database", str(tmp_path / "hypothesis")),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert prop.returncode == 0 and "properties hold" in prop.stdout, prop.stdout + prop.stderr
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    server = subprocess.Popen(
        [str(venv / "bin" / "gateway"), "quickstart", "--port", str(free_port())],
        cwd=home,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        banner = _read_banner(server.stdout, server)
        deadline = time.monotonic() + 60
        curl = _indented_block(banner, "Try it")
        pasted = _until_answered(["bash", "-c", curl], deadline)
        assert pasted.returncode == 0, pasted.stderr
        assert f'"content":"{HELLO}"' in pasted.stdout
        # The SDK is not a dependency of the gateway: the snippet runs where it is installed.
        snippet = _indented_block(banner, "Or with the OpenAI Python SDK")
        sdk = _until_answered([sys.executable, "-c", snippet], deadline)
        assert sdk.returncode == 0, sdk.stderr
        assert sdk.stdout.strip() == HELLO
    finally:
        server.terminate()
        _, log = server.communicate(timeout=30)
    assert (home / "gateway.db").exists()
    token = re.search(r"llmgtwy_\S+", banner)
    assert token is not None and token.group(0) not in log  # the log never shows it


def test_readme_shows_what_quickstart_prints() -> None:
    """The README's first screen is the banner of the default configuration, verbatim."""
    shown = re.search(r"```text\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert shown is not None, "README.md shows the quickstart output in a text block"
    token = re.search(r"llmgtwy_\S+", shown.group(1))
    assert token is not None
    assert shown.group(1) == banner(GatewayConfig(), token.group(0))
