"""The in-memory decision log, the usage chart and the session signer on their own."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from proxy.dashboard import InMemoryDecisionLog, LoggedDecision
from proxy.dashboard.decision_log import DailyUsage
from proxy.dashboard.feed import decision_from_line
from proxy.dashboard.session import SessionSigner
from proxy.dashboard.usage_chart import daily_usage_svg

DAY = date(2026, 11, 27)


def _entry(key_id: str, at: datetime, cost: str = "0", status: int = 200) -> LoggedDecision:
    return LoggedDecision(
        time=at,
        key_id=key_id,
        operation="chat.completions",
        model="mock-model",
        provider="mock",
        status=status,
        cost=Decimal(cost),
    )


def test_recent_is_newest_first_per_key_and_bounded() -> None:
    log = InMemoryDecisionLog(per_key_limit=3)
    start = datetime(2026, 11, 27, 9, tzinfo=UTC)
    for minute in range(5):
        log.record(_entry("key_a", start + timedelta(minutes=minute)))
    log.record(_entry("key_b", start))
    recent = asyncio.run(log.recent("key_a", 10))
    assert [e.time.minute for e in recent] == [4, 3, 2]
    assert asyncio.run(log.recent("key_a", 1))[0].time.minute == 4
    assert asyncio.run(log.recent("key_unknown", 5)) == []


def test_daily_usage_sums_exact_decimals_per_utc_day() -> None:
    log = InMemoryDecisionLog()
    late = datetime(2026, 11, 26, 23, 59, tzinfo=UTC)
    log.record(_entry("k", late, "0.1"))
    log.record(_entry("k", late, "0.2"))
    log.record(_entry("k", datetime(2026, 11, 27, 0, 1, tzinfo=UTC), "1.000001"))
    log.record(_entry("k", datetime(2026, 10, 1, tzinfo=UTC), "99"))  # outside the window
    days = asyncio.run(log.daily_usage("k", 3, today=DAY))
    assert days == [
        DailyUsage(day=date(2026, 11, 25), cost=Decimal(0)),
        DailyUsage(day=date(2026, 11, 26), cost=Decimal("0.3")),
        DailyUsage(day=date(2026, 11, 27), cost=Decimal("1.000001")),
    ]


def test_chart_bar_heights_are_proportional() -> None:
    svg = daily_usage_svg(
        [
            DailyUsage(day=date(2026, 11, 25), cost=Decimal(0)),
            DailyUsage(day=date(2026, 11, 26), cost=Decimal("0.5")),
            DailyUsage(day=date(2026, 11, 27), cost=Decimal("1")),
        ]
    )
    heights = [float(h) for h in re.findall(r'<rect [^>]*height="([\d.]+)"', svg)]
    assert len(heights) == 3
    assert heights[0] == 0 and heights[2] == 2 * heights[1] > 0
    assert "2026-11-27: $1.00" in svg


def test_sessions_expire_and_signatures_bind_to_the_admin_token() -> None:
    now = [1_000_000.0]
    signer = SessionSigner("admin-token", lifetime_seconds=60, clock=lambda: now[0])
    session, cookie = signer.issue()
    assert signer.read(cookie) == session
    assert SessionSigner("other-token", clock=lambda: now[0]).read(cookie) is None
    assert signer.read(cookie + "0") is None
    assert signer.read("no-dots") is None
    now[0] += 61
    assert signer.read(cookie) is None


def test_revoked_sessions_stay_revoked_and_admin_token_compare_is_exact() -> None:
    signer = SessionSigner("admin-token")
    session, cookie = signer.issue()
    signer.revoke(session)
    assert signer.read(cookie) is None
    assert signer.check_admin_token("admin-token")
    assert not signer.check_admin_token("admin-token ")
    assert not signer.check_admin_token("")


def test_decision_lines_become_activity_entries_with_exact_cost() -> None:
    line = (
        '{"key_id":"key_1","operation":"chat.completions","model":"mock-model",'
        '"provider":"mock","decision":"allow","status":200,"cost":"0.000017","total_ms":1.5}'
    )
    entry = decision_from_line(line, created=1_795_000_000.0)
    assert entry is not None
    assert (entry.key_id, entry.model, entry.provider, entry.status, entry.cost) == (
        "key_1",
        "mock-model",
        "mock",
        200,
        Decimal("0.000017"),
    )
    assert entry.time == datetime.fromtimestamp(1_795_000_000.0, UTC)
    denied = decision_from_line(
        '{"key_id":"key_1","operation":"chat.completions","model":"gpt-4","provider":"openai",'
        '"decision":"deny","status":403,"reason":"Access denied: x"}',
        created=0.0,
    )
    assert denied is not None
    assert (denied.provider, denied.cost, denied.message) == (None, None, "Access denied: x")
    assert decision_from_line('{"key_id":null,"status":401}', 0.0) is None
    assert decision_from_line("listening on http://127.0.0.1:4000", 0.0) is None
