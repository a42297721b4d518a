"""The load generator against the real mock upstream, and its arithmetic."""

from __future__ import annotations

import asyncio

from bench.loadgen import Endpoint, LoadResult, Sample, chat_body, interleaved, percentile, run_load
from bench.mock_upstream import start_mock_upstream


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert percentile(values, 0.50) == 50
    assert percentile(values, 0.99) == 99
    assert percentile(values, 1.0) == 100
    assert percentile([], 0.5) == 0


def test_load_result_counts_failures_and_incomplete_streams() -> None:
    ms = 1_000_000
    samples = [
        Sample(200, 1 * ms, 2 * ms, True),
        Sample(200, 1 * ms, 4 * ms, True),
        Sample(500, 1 * ms, 1 * ms, True),
        Sample(200, 1 * ms, 9 * ms, False),
    ]
    result = LoadResult.from_samples(samples, errors=1, elapsed_s=2.0)
    assert result.completed == 2
    assert result.errors == 3
    assert result.rate_per_s == 1.0
    assert result.latency_p50_ms == 2.0
    assert result.latency_p99_ms == 4.0


def test_closed_loop_and_interleaved_against_the_mock() -> None:
    async def scenario() -> tuple[LoadResult, list[list[Sample]]]:
        upstream = await start_mock_upstream("127.0.0.1", 0, "instant")
        try:
            url = f"{upstream.base_url}/chat/completions"
            plain = Endpoint.post_json(url, chat_body(stream=False))
            stream = Endpoint.post_json(url, chat_body(stream=True), [("X-Bench", "1")])
            load = await run_load(plain, concurrency=4, duration_s=0.3, warmup_s=0.1)
            series = await interleaved([plain, stream], count=5)
            return load, series
        finally:
            await upstream.close()

    load, series = asyncio.run(scenario())
    assert load.completed > 0
    assert load.errors == 0
    assert [len(samples) for samples in series] == [5, 5]
    assert all(s.status == 200 and s.complete for samples in series for s in samples)
    assert all(s.first_byte_ns <= s.total_ns for samples in series for s in samples)
