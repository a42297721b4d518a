"""The cancel scope the gateway's request path enters: anyio's, for asyncio.

`anyio.CancelScope()` looks the running async library up (sniffio, the current task)
on every call, about 40% of a scope's cost (31.8k -> 19.1k instructions a scope entered
and left, issue 15), and a plain request enters two. The gateway only ever runs on
asyncio, so the scope is made by anyio's asyncio backend class directly: the very object
`anyio.CancelScope()` would return. That class is anyio's internal (measured with anyio
4.16; anyio is not pinned), so an anyio without it falls back to the public one: the
same behaviour, at the lookup's cost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["CancelScope"]

if TYPE_CHECKING:
    from anyio import CancelScope
else:
    try:
        from anyio._backends._asyncio import CancelScope
    except ImportError:  # pragma: no cover - an anyio that moved its backend
        from anyio import CancelScope
