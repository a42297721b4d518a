"""`gateway quickstart`: from an empty directory to a running gateway and a key on screen.

It opens the configured store as `serve` does (creating the SQLite file, the `default`
organization and project on first use), creates a new API key in `default`, prints it
once with a `curl` command and an `openai` SDK snippet that work as pasted (the built-in
`mock` provider answers them offline), then serves. Every run makes a new key: tokens are
stored only as hashes, so an old one cannot be shown again.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

from proxy.config import GatewayConfig

__all__ = ["QUICKSTART_KEY_NAME", "announce", "banner", "create_quickstart_key"]

QUICKSTART_KEY_NAME = "quickstart"
_PROJECT = "default"


def create_quickstart_key(config: GatewayConfig) -> str:
    """A new key in the `default` project of the configured store; its plain token."""
    from proxy.app import open_configured_store

    async def create() -> str:
        store = await open_configured_store(config)
        try:
            _, token = await store.create_key(_PROJECT, None, QUICKSTART_KEY_NAME)
        finally:
            await store.close()
        return token

    return asyncio.run(create())


def banner(config: GatewayConfig, token: str) -> str:
    """What the user sees before the server's log: the key and two ways to use it."""
    host = "127.0.0.1" if config.host in ("0.0.0.0", "::", "") else config.host  # noqa: S104
    base = f"http://{host}:{config.port}/v1"
    return f"""\
llm-gateway quickstart: database {config.database}, project `{_PROJECT}`.

Your API key (shown once; `gateway keys list` shows its id, not the token):

    {token}

Try it from another terminal; the built-in `mock` provider answers, offline:

    export TOKEN={token}
    curl {base}/chat/completions \\
      -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \\
      -d '{{"model": "mock-model", "messages": [{{"role": "user", "content": "Hello!"}}]}}'

Or with the OpenAI Python SDK (pip install openai):

    from openai import OpenAI
    client = OpenAI(base_url="{base}", api_key="{token}")
    reply = client.chat.completions.create(
        model="mock-model", messages=[{{"role": "user", "content": "Hello!"}}]
    )
    print(reply.choices[0].message.content)

Serving on http://{host}:{config.port} (Ctrl-C stops it; `gateway serve` starts it again).
"""


def announce(config: GatewayConfig, token: str, out: TextIO | None = None) -> None:
    """Print the banner now (to stdout by default), before the server's log lines start
    on stderr."""
    stream = sys.stdout if out is None else out
    stream.write(banner(config, token))
    stream.flush()
