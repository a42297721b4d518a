"""Offline policy tooling: `fmt`, `test` (with coverage), `prop`, `eval --explain`, `bench`.

Each tool is one module with one typed entry function; `cli` wires them into
the `policy-engine` command. Nothing here is on the request path: the proxy
only ever imports `explain` (for debug logging), which builds its own traced
engine and leaves the normal compiled path untouched.
"""
