"""`fmt` on random grammar-shaped modules: whatever parses formats idempotently to the same AST."""

from __future__ import annotations

from importlib.resources import files

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra.lark import from_lark
from lark import Lark
from test_fmt import assert_canonical

from policy_engine.errors import PolicyError
from policy_engine.parser import parse_module

GRAMMAR = files("policy_engine").joinpath("grammar.lark").read_text(encoding="utf-8")
GENERATOR = Lark(GRAMMAR, parser="lalr", lexer="contextual", start=["module", "query"])
_KEYWORDS = ["package", "import", "default", "if", "else", "contains", "some", "every", "in",
             "not", "with", "as", "true", "false", "null"]  # fmt: skip
# lark's generator concatenates tokens: pad words so they stay apart, and keep
# comments on their own line so they do not swallow the rest of the text.
TOKENS = {
    "_SEP": st.sampled_from(["\n", "; "]),
    "LBODY": st.just("{"),
    "NAME": st.from_regex(r"[a-z_][a-z0-9_]{0,4}", fullmatch=True).map(lambda n: f" {n} "),
    "NUMBER": st.from_regex(r"(0|[1-9][0-9]{0,3})(\.[0-9]{1,2})?", fullmatch=True).map(
        lambda n: f" {n} "
    ),
    "COMMENT": st.just("# a comment\n"),
    **{word.upper(): st.just(f" {word} ") for word in _KEYWORDS},
}


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(from_lark(GENERATOR, start="module", explicit=TOKENS))
def test_generated_modules_format_idempotently_and_keep_their_ast(text: str) -> None:
    try:
        parse_module(text, "generated.rego")
    except PolicyError:
        event("does not parse")
        return
    event("parses")
    assert_canonical(text)
