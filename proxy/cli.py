"""The `gateway` command: `serve`, `quickstart`, `migrate`, and the admin commands of
`proxy.admin_cli`.

Every command takes `--config PATH` and `--json`. A bad configuration or policy is
reported with its location and exits with status 2 before anything starts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from proxy.config import ConfigError, GatewayConfig, load_config
from proxy.log_lines import BatchedStreamHandler
from proxy.store.base import StoreError

__all__ = ["build_parser", "configure_logging", "main"]

logger = logging.getLogger("gateway")

EXIT_USAGE = 2

Handler = Callable[[argparse.Namespace], int]


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="YAML config file (default: $GATEWAY_CONFIG, else none)")
    common.add_argument("--json", action="store_true", help="print one JSON object")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="gateway", description="An authorizing, OpenAI-compatible LLM gateway."
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    serve = subparsers.add_parser("serve", parents=[common], help="run the HTTP server")
    serve.add_argument("--host", help="listen address (overrides `host`)")
    serve.add_argument("--port", type=int, help="listen port (overrides `port`)")
    serve.add_argument(
        "--workers",
        type=_workers,
        metavar="N",
        help="processes serving the port (overrides `workers`, default 1; `auto`: one per core)",
    )
    serve.set_defaults(handler=_serve)
    quickstart = subparsers.add_parser(
        "quickstart",
        parents=[common],
        help="create the database and a first API key, print it with examples, then serve",
    )
    quickstart.add_argument("--host", help="listen address (overrides `host`)")
    quickstart.add_argument("--port", type=int, help="listen port (overrides `port`)")
    quickstart.set_defaults(handler=_quickstart)
    migrate = subparsers.add_parser(
        "migrate", parents=[common], help="create or upgrade the database"
    )
    migrate.set_defaults(handler=_migrate)
    _add_admin_commands(subparsers, common)
    return parser


def _add_admin_commands(subparsers: Any, common: argparse.ArgumentParser) -> None:
    try:
        from proxy import admin_cli
    except ImportError as exc:
        # The admin commands live in their own module; `serve` still works without them.
        print(f"gateway: warning: admin commands unavailable ({exc})", file=sys.stderr)
        return
    admin_cli.add_commands(subparsers, common)


def _workers(text: str) -> int:
    from proxy.workers import parse_workers

    try:
        return parse_workers(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _worker_count(args: argparse.Namespace, config: GatewayConfig) -> int:
    """`--workers` when given, else the config's `workers` (a number or `auto`)."""
    given: int | None = getattr(args, "workers", None)
    if given is not None:
        return given
    from proxy.workers import parse_workers

    return parse_workers(str(config.workers))


def _load(args: argparse.Namespace) -> GatewayConfig:
    return load_config(args.config)


def _report(args: argparse.Namespace, payload: dict[str, Any], text: str) -> None:
    print(json.dumps(payload) if args.json else text)


def _serve(
    args: argparse.Namespace, before_serving: Callable[[GatewayConfig], None] | None = None
) -> int:
    """Bind, build the app, check the store, then (after `before_serving`) serve."""
    import msgspec

    from proxy.policy import PolicyLoadError

    config = _load(args)
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    config = msgspec.structs.replace(config, **overrides)
    configure_logging(config.log_level)
    from proxy import server

    try:
        # Bound first: a port in use fails here, before anything says "listening".
        sock = server.bind(config.host, config.port)
    except server.PortUnavailable as exc:
        return _fail(args, str(exc))
    with sock:
        from proxy.app import create_app

        try:
            app = create_app(config)
        except PolicyLoadError as exc:
            return _fail(args, f"cannot load the policy:\n{exc}")
        problem = _store_problem(config)
        if problem is not None:
            return _fail(args, problem)
        from proxy.gc_tuning import tune_for_serving

        if before_serving is not None:
            before_serving(config)
        workers = _worker_count(args, config)
        if workers > 1:
            from proxy.workers import supervise

            del app  # each worker builds its own; this one only proved the policy loads
            logger.info("%s; %d workers", server.announcement(config, sock), workers)
            return supervise(config, sock, workers)
        tune_for_serving()
        server.serve(app, config, sock)
    return 0


def _quickstart(args: argparse.Namespace) -> int:
    from proxy import quickstart

    def create_key_and_announce(config: GatewayConfig) -> None:
        # The port is bound and the store checked: the key printed is usable right away.
        quickstart.announce(config, quickstart.create_quickstart_key(config))

    return _serve(args, before_serving=create_key_and_announce)


def _store_problem(config: GatewayConfig) -> str | None:
    """Open (migrate, seed) and close the store once, so a wrong `database` is reported
    here, before the server starts, rather than as a failed ASGI lifespan."""
    from proxy.app import open_configured_store

    async def check() -> None:
        store = await open_configured_store(config)
        await store.close()

    try:
        asyncio.run(check())
    except StoreError as exc:
        return str(exc)
    except Exception as exc:  # driver errors (connection refused, auth failed, ...)
        where = _redacted(config.database)
        return f"field `database`: cannot open `{where}` ({exc}); check the URL and the server"
    return None


def _redacted(url: str) -> str:
    """The URL without its password, fit for an error message."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def _migrate(args: argparse.Namespace) -> int:
    from proxy.secret_box import box_for
    from proxy.store import open_store

    config = _load(args)

    async def run() -> None:
        store = open_store(config.database, config.usage_store, secrets=box_for(config.secret_key))
        try:
            await store.migrate()
        finally:
            await store.close()

    asyncio.run(run())
    _report(args, {"migrated": True}, "database migrated")
    return 0


# The log line of `gateway serve` (and of its workers).
LINE_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class _SecondCachedFormatter(logging.Formatter):
    """`logging.Formatter(LINE_FORMAT)`'s text, made for less: `serve` writes one
    decision line per request. The date part of `asctime` is formatted once per second
    (strftime was most of a line's cost), and a line without a traceback or stack is
    put together directly, not by `Formatter.format`'s general steps (a search of the
    format for `%(asctime)` and a %-format over the record's `__dict__`: ~2/3 of what
    formatting a decision line cost, issue 15)."""

    def __init__(self) -> None:
        super().__init__(LINE_FORMAT)
        self._second = -1
        self._date = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:
            self._date = time.strftime("%Y-%m-%d %H:%M:%S", self.converter(second))
            self._second = second
        return f"{self._date},{int(record.msecs):03d}"

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info or record.exc_text or record.stack_info:
            return super().format(record)  # the traceback's or stack's lines appended
        # What `Formatter.format` sets on the record and returns, for LINE_FORMAT
        # (`formatTime` inline: a call fewer).
        record.message = message = record.getMessage()
        second = int(record.created)
        if second != self._second:
            self._date = time.strftime("%Y-%m-%d %H:%M:%S", self.converter(second))
            self._second = second
        # The standard `default_msec_format`, "%s,%03d".
        record.asctime = asctime = "%s,%03d" % (self._date, record.msecs)  # noqa: UP031
        return "%s %s %s %s" % (asctime, record.levelname, record.name, message)  # noqa: UP031


def configure_logging(level: str) -> None:
    """The log format of `gateway serve` (and of its workers), on stderr."""
    handler = BatchedStreamHandler(sys.stderr)
    handler.setFormatter(_SecondCachedFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler])
    # Nothing in the line shows them; skipping them makes each record cheaper.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    # Nor the caller's file, line and function: without this, every record (a decision
    # line per request) walks the stack to find them (Logger.findCaller, ~0.4% of the
    # gateway's CPU samples at c=64).
    logging._srcfile = None


def _fail(args: argparse.Namespace, message: str) -> int:
    if getattr(args, "json", False):
        print(json.dumps({"error": message}))
    print(f"gateway: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except (ConfigError, StoreError) as exc:
        return _fail(args, str(exc))


if __name__ == "__main__":
    sys.exit(main())
