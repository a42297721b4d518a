"""`policy-engine eval --explain`: why a query produced its value.

From Python (e.g. the proxy's debug logging):

```python
explainer = Explainer.from_sources(sources, data={"catalog": catalog})   # once
explanation = explainer.explain("data.gateway.decision", input_document)
log.debug(render_explanation(explanation, "notes"))
```

Modes (as `opa eval --explain`): `full` prints every step (rules tried,
statements evaluated or failed, values produced), `fails` only the statements
and clauses that failed, `notes` only the verdict. Every mode ends with the
verdict: the clause that produced the value and the rules its body relied on,
each with `file:line`; for a gateway decision also its status and message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import msgspec

from policy_engine.engine import Engine, EngineConfig, Prepared
from policy_engine.errors import PolicyError
from policy_engine.loader import read_policy_files
from policy_engine.source import source_lines
from policy_engine.tooling.trace import TraceEvent, Tracer, traced_engine
from policy_engine.values import UNDEFINED

__all__ = ["EXPLAIN_MODES", "Explainer", "Explanation", "Verdict", "render_explanation"]

EXPLAIN_MODES = ("full", "notes", "fails")
_REF = re.compile(r"data(\.[A-Za-z_][A-Za-z0-9_]*)+")
_SOURCE_CHARS = 90


class Reason(msgspec.Struct, frozen=True, kw_only=True):
    """A rule the deciding clause relied on, with the value it had."""

    rule: str
    file: str
    line: int
    value: str | None


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    """Which clause produced the query's value, and on what."""

    rule: str
    file: str
    line: int
    reasons: tuple[Reason, ...]


class Explanation(msgspec.Struct, frozen=True, kw_only=True):
    """One traced evaluation: the value (None when undefined), the steps, the verdict."""

    query: str
    defined: bool
    value: Any
    events: tuple[TraceEvent, ...]
    verdict: Verdict | None
    texts: dict[str, str]


class Explainer:
    """A tracing engine for explaining single evaluations; build once, reuse."""

    def __init__(self, engine: Engine, tracer: Tracer, texts: Mapping[str, str]) -> None:
        self._engine = engine
        self._tracer = tracer
        self._texts = dict(texts)
        self._prepared: dict[str, Prepared] = {}

    @classmethod
    def from_sources(
        cls,
        sources: Mapping[str, str],
        data: Mapping[str, Any] | None = None,
        config: EngineConfig | None = None,
    ) -> Explainer:
        engine, tracer = traced_engine(sources, data, config)
        return cls(engine, tracer, sources)

    @classmethod
    def from_paths(
        cls,
        paths: Iterable[str | Path],
        data: Mapping[str, Any] | None = None,
        config: EngineConfig | None = None,
    ) -> Explainer:
        return cls.from_sources(read_policy_files(paths), data, config)

    def explain(
        self,
        ref: str,
        input: Any,
        data: Mapping[str, Any] | None = None,
    ) -> Explanation:
        """Evaluate `ref` (e.g. `data.gateway.decision`) and trace it.

        Any query works (`x := data.gateway.decision.status`); the value is then
        its result set and the verdict is about the first `data.` reference in it.
        """
        prepared = self._prepare(ref)
        with self._tracer.run() as events:
            if prepared is not None:
                value = prepared(input, data)
            else:
                rows = self._engine.query(ref, input=input, data=data)
                value = rows if rows else UNDEFINED
            steps = tuple(events)
        defined = value is not UNDEFINED
        rule = self._rule_in(ref)
        return Explanation(
            query=ref,
            defined=defined,
            value=value if defined else None,
            events=steps,
            verdict=find_verdict(rule, steps) if rule else None,
            texts=self._texts,
        )

    def _rule_in(self, query: str) -> str | None:
        """The rule the query reads: the longest prefix of its first `data.` ref that is one."""
        named = _REF.search(query)
        if named is None:
            return None
        parts = named.group(0).split(".")
        rules = set(self._engine.rule_paths)
        for end in range(len(parts), 1, -1):
            candidate = ".".join(parts[:end])
            if candidate in rules:
                return candidate
        return None

    def _prepare(self, ref: str) -> Prepared | None:
        if ref not in self._prepared:
            try:
                self._prepared[ref] = self._engine.prepare(ref)
            except PolicyError:
                if not _REF.fullmatch(ref.strip()):
                    return None  # a general query: evaluated through `query`
                raise
        return self._prepared[ref]


def find_verdict(ref: str, events: tuple[TraceEvent, ...]) -> Verdict | None:
    """The outermost clause of `ref` that produced a value, and the rules it used."""
    exits = [e.depth for e in events if e.op == "exit" and e.name == ref]
    if not exits:
        return None
    top = min(exits)
    for position, event in enumerate(events):
        if event.depth == top and event.op == "exit" and event.name == ref:
            start = _matching_enter(events, position)
            inner = events[start + 1 : position]
            reasons = tuple(
                Reason(rule=e.name, file=e.file, line=e.line, value=e.value)
                for e in inner
                if e.op == "exit" and e.kind in ("clause", "rule", "default") and e.depth == top + 2
            )
            return Verdict(rule=ref, file=event.file, line=event.line, reasons=reasons)
    return None


def _matching_enter(events: tuple[TraceEvent, ...], exit_position: int) -> int:
    done = events[exit_position]
    for position in range(exit_position - 1, -1, -1):
        e = events[position]
        if e.op == "enter" and e.depth == done.depth and e.name == done.name:
            return position
    return 0


# ---- rendering ---------------------------------------------------------------------------------


def _source(texts: Mapping[str, str], event: TraceEvent) -> str:
    text = texts.get(event.file)
    if text is None:
        return ""
    lines = source_lines(text, event.file)
    if not 1 <= event.line <= len(lines):
        return ""
    line = lines[event.line - 1]
    if event.end_line == event.line and event.end_column > event.column:
        snippet = line[event.column - 1 : event.end_column - 1]
    else:
        snippet = line[event.column - 1 :].rstrip() + " …"
    snippet = " ".join(snippet.split())
    return snippet if len(snippet) <= _SOURCE_CHARS else snippet[: _SOURCE_CHARS - 1] + "…"


_WORDS = {"enter": "Enter", "exit": "Exit", "eval": "Eval", "fail": "Fail"}


def _line(event: TraceEvent, texts: Mapping[str, str]) -> str:
    what = _source(texts, event) if event.kind == "expr" else event.name
    if event.kind == "default":
        what = f"{event.name} (default)"
    if event.kind == "function" and event.op == "enter" and event.value is not None:
        what = f"{event.name}{event.value}"
    elif event.op == "exit" and event.value is not None:
        what = f"{what} = {event.value}"
    indent = "| " * event.depth
    return f"{event.file}:{event.line}: {indent}{_WORDS[event.op]} {what}"


def render_explanation(explanation: Explanation, mode: str) -> str:
    """The trace in `mode` (`full`, `notes` or `fails`) followed by the verdict."""
    if mode not in EXPLAIN_MODES:
        raise ValueError(f"unknown explain mode `{mode}`; use one of {', '.join(EXPLAIN_MODES)}")
    lines: list[str] = []
    if mode == "full":
        lines += [_line(e, explanation.texts) for e in explanation.events]
    elif mode == "fails":
        lines += [_line(e, explanation.texts) for e in explanation.events if e.op == "fail"]
    if lines:
        lines.append("")
    lines += _verdict_lines(explanation)
    return "\n".join(lines) + "\n"


def _verdict_lines(explanation: Explanation) -> list[str]:
    if not explanation.defined:
        return [f"{explanation.query} is undefined: no clause produced a value"]
    value = explanation.value
    out: list[str] = []
    verdict = explanation.verdict
    if verdict is None:
        out.append(f"{explanation.query} = {_json(value)} (no rule clause produced it)")
    else:
        head = _head(explanation.texts, verdict)
        out.append(
            f"{explanation.query} decided by the clause at {verdict.file}:{verdict.line}{head}"
        )
        for reason in verdict.reasons:
            shown = "" if reason.value is None else f" = {reason.value}"
            out.append(f"  because {reason.rule}{shown} ({reason.file}:{reason.line})")
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
        out.append(f"  result: {_json(value[0])}")
    if isinstance(value, dict) and "status" in value and "message" in value:
        allowed = "allowed" if value.get("allow") is True else "denied"
        out.append(f"  {allowed}: status {value['status']}, message {_json(value['message'])}")
    return out


def _head(texts: Mapping[str, str], verdict: Verdict) -> str:
    lines = source_lines(texts.get(verdict.file, ""), verdict.file)
    if not 1 <= verdict.line <= len(lines):
        return ""
    text = " ".join(lines[verdict.line - 1].split())
    text = text if len(text) <= _SOURCE_CHARS else text[: _SOURCE_CHARS - 1] + "…"
    return f": {text}"


def _json(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False, sort_keys=True)
