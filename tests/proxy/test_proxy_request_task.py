"""A request's task under `gateway serve` leaves the server's `tasks` itself, in its
last step, not through a done callback run at the loop's next turn
(`proxy.connection_deadlines`): no loop turn after a reply for the bookkeeping."""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.config import Config
from uvicorn.server import ServerState

from proxy.connection_deadlines import ConnectionLimits, deadline_protocol


class _Transport:
    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 1), "sockname": ("127.0.0.1", 2)}.get(name, default)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _app(scope: Any, receive: Any, send: Any) -> None:  # never called here
    raise AssertionError


class _Cycle:
    """What `_start_asgi_task` needs of a cycle: its `run_asgi`, here noting what the
    server's `tasks` held while it ran."""

    def __init__(self, tasks: set[asyncio.Task[None]], fail: bool = False) -> None:
        self.tasks = tasks
        self.fail = fail
        self.held: list[bool] = []

    async def run_asgi(self, app: Any) -> None:
        await asyncio.sleep(0)
        self.held.append(asyncio.current_task() in self.tasks)
        if self.fail:
            raise RuntimeError("the app failed")


def _protocol(loop: asyncio.AbstractEventLoop, reset_contextvars: bool = False) -> Any:
    limits = ConnectionLimits(header_read_timeout=3600, body_read_timeout=3600, max_connections=10)
    config = Config(_app, log_config=None, reset_contextvars=reset_contextvars)
    protocol = deadline_protocol(limits)(
        config=config, server_state=ServerState(), app_state={}, _loop=loop
    )
    protocol.connection_made(_Transport())
    return protocol


def test_the_task_leaves_the_servers_tasks_in_its_last_step() -> None:
    async def main() -> None:
        protocol = _protocol(asyncio.get_running_loop())
        tasks: set[asyncio.Task[None]] = protocol.tasks
        for fail in (False, True):
            cycle = _Cycle(tasks, fail)
            protocol._start_asgi_task(cycle, _app)
            (task,) = tasks
            # No done callback left to run at the loop's next turn.
            assert task.remove_done_callback(tasks.discard) == 0
            await asyncio.wait([task])
            assert cycle.held == [True]
            assert tasks == set()
            if fail:
                assert isinstance(task.exception(), RuntimeError)

    asyncio.run(main())


def test_with_context_variables_reset_uvicorns_own_start_is_used() -> None:
    async def main() -> None:
        protocol = _protocol(asyncio.get_running_loop(), reset_contextvars=True)
        tasks: set[asyncio.Task[None]] = protocol.tasks
        cycle = _Cycle(tasks)
        protocol._start_asgi_task(cycle, _app)
        (task,) = tasks
        await asyncio.wait([task])
        await asyncio.sleep(0)
        assert cycle.held == [True] and tasks == set()

    asyncio.run(main())
