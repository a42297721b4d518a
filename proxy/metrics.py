"""Prometheus metrics, rendered in the text exposition format at `/metrics`.

Written here rather than pulling in prometheus_client: five series, one process, and
no global registry (each app owns its `Metrics`). Labels never carry a token or key.
Under `gateway serve --workers N` every series also carries `worker="k"` (see
`proxy.worker_metrics`, which merges the workers' texts into one answer).
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from decimal import Decimal

__all__ = ["Metrics"]

Labels = tuple[tuple[str, str], ...]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_UPSTREAM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _render_labels(labels: Labels, extra: tuple[tuple[str, str], ...] = ()) -> str:
    pairs = labels + extra
    if not pairs:
        return ""
    return "{" + ",".join(f'{name}="{_escape(value)}"' for name, value in pairs) + "}"


class _Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value

    def render(self, name: str, labels: Labels) -> list[str]:
        lines: list[str] = []
        cumulative = 0
        for bound, count in zip(self.buckets, self.counts, strict=False):
            cumulative += count
            le = (("le", repr(bound)),)
            lines.append(f"{name}_bucket{_render_labels(labels, le)} {cumulative}")
        cumulative += self.counts[-1]
        lines.append(f"{name}_bucket{_render_labels(labels, (('le', '+Inf'),))} {cumulative}")
        lines.append(f"{name}_sum{_render_labels(labels)} {self.total}")
        lines.append(f"{name}_count{_render_labels(labels)} {cumulative}")
        return lines


class Metrics:
    """Every series the gateway exports; updated on the request path, rendered on scrape."""

    def __init__(self, constant_labels: Labels = ()) -> None:
        # Added to every series, e.g. (("worker", "1"),) in a worker process.
        self._constant = constant_labels
        self._requests: defaultdict[Labels, int] = defaultdict(int)
        self._decision = _Histogram(_LATENCY_BUCKETS)
        self._upstream: dict[Labels, _Histogram] = {}
        self._tokens: defaultdict[Labels, int] = defaultdict(int)
        self._cost: defaultdict[Labels, Decimal] = defaultdict(Decimal)
        self._denials: defaultdict[Labels, int] = defaultdict(int)

    def request(self, operation: str, status: int) -> None:
        self._requests[(("operation", operation), ("status", str(status)))] += 1

    def denial(self, reason: str) -> None:
        """A refused request, by the decision's reason code (`rate_limit_requests`,
        `deny_models`, `expired`, ...) or, for denials without one, its status class."""
        self._denials[(("reason", reason),)] += 1

    def decision_latency(self, seconds: float) -> None:
        self._decision.observe(seconds)

    def upstream_latency(self, provider: str, seconds: float) -> None:
        labels = (("provider", provider),)
        histogram = self._upstream.get(labels)
        if histogram is None:
            histogram = self._upstream[labels] = _Histogram(_UPSTREAM_BUCKETS)
        histogram.observe(seconds)

    def usage(self, provider: str, model: str, prompt: int, completion: int, cost: Decimal) -> None:
        base = (("provider", provider), ("model", model))
        self._tokens[(*base, ("kind", "prompt"))] += prompt
        self._tokens[(*base, ("kind", "completion"))] += completion
        self._cost[base] += cost

    def render(self, extra_gauges: dict[str, tuple[str, float]] | None = None) -> str:
        """The exposition text; `extra_gauges` maps name -> (help, value) read at scrape."""
        lines = [
            "# HELP gateway_requests_total Requests answered, by operation and HTTP status.",
            "# TYPE gateway_requests_total counter",
        ]
        const = self._constant
        lines += [
            f"gateway_requests_total{_render_labels(k, const)} {v}"
            for k, v in self._requests.items()
        ]
        lines += [
            "# HELP gateway_denials_total Requests refused, by decision reason.",
            "# TYPE gateway_denials_total counter",
        ]
        lines += [
            f"gateway_denials_total{_render_labels(k, const)} {v}" for k, v in self._denials.items()
        ]
        lines += [
            "# HELP gateway_decision_seconds Time spent evaluating the policy per request.",
            "# TYPE gateway_decision_seconds histogram",
            *self._decision.render("gateway_decision_seconds", const),
            "# HELP gateway_upstream_seconds Time to the upstream's response headers.",
            "# TYPE gateway_upstream_seconds histogram",
        ]
        for labels, histogram in self._upstream.items():
            lines += histogram.render("gateway_upstream_seconds", labels + const)
        lines += [
            "# HELP gateway_tokens_total Tokens reported by providers.",
            "# TYPE gateway_tokens_total counter",
        ]
        lines += [
            f"gateway_tokens_total{_render_labels(k, const)} {v}" for k, v in self._tokens.items()
        ]
        lines += [
            "# HELP gateway_cost_usd_total Usage cost charged, in USD.",
            "# TYPE gateway_cost_usd_total counter",
        ]
        lines += [
            f"gateway_cost_usd_total{_render_labels(k, const)} {v}" for k, v in self._cost.items()
        ]
        for name, (help_text, value) in (extra_gauges or {}).items():
            lines += [
                f"# HELP {name} {help_text}",
                f"# TYPE {name} gauge",
                f"{name}{_render_labels(const)} {value}",
            ]
        return "\n".join(lines) + "\n"
