"""`/metrics` under `gateway serve --workers N`: every worker's series in one answer.

A scrape reaches whichever worker accepts the connection, so each worker writes its
own exposition text (every series labelled `worker="k"`) to a file in a directory the
supervisor made, every `PUBLISH_INTERVAL` seconds and whenever it answers a scrape,
and answers with the files of all workers merged family by family. Each series then
belongs to one worker and only grows (another worker's file is at most
`PUBLISH_INTERVAL` old, and never older than one an earlier scrape showed), so
Prometheus' `rate()` and `sum by (...)` work as with one process. Labelled rather than
summed: a restarted worker starts its counters at zero, which Prometheus reads as a
reset of that worker's series instead of a drop in a total.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

__all__ = ["PUBLISH_INTERVAL", "WorkerShare", "merge_expositions"]

PUBLISH_INTERVAL = 1.0
_SUFFIX = ".prom"


class WorkerShare(msgspec.Struct, frozen=True, kw_only=True):
    """Where worker `worker` publishes its metrics and reads its siblings'."""

    directory: str
    worker: str

    @property
    def path(self) -> Path:
        """This worker's file; its first appearance also tells the supervisor that the
        worker has started (store open, policy loaded)."""
        return Path(self.directory) / f"worker-{self.worker}{_SUFFIX}"

    def publish(self, text: str) -> None:
        """Replace this worker's file atomically (a reader sees the old or the new text)."""
        final = self.path
        partial = final.with_suffix(".tmp")
        partial.write_text(text)
        partial.replace(final)

    def collect(self) -> str:
        """Every worker's last published text, merged into one exposition."""
        texts = []
        for path in sorted(Path(self.directory).glob(f"*{_SUFFIX}")):
            try:
                texts.append(path.read_text())
            except FileNotFoundError:  # the supervisor is cleaning up
                continue
        return merge_expositions(texts)


def merge_expositions(texts: list[str]) -> str:
    """One exposition from several with the same families (as `Metrics.render` writes
    them: `# HELP`, `# TYPE`, then the series): each family's header once, followed by
    every text's series of it, families in the order first seen."""
    headers: dict[str, list[str]] = {}
    series: dict[str, list[str]] = {}
    for text in texts:
        family = ""
        for line in text.splitlines():
            if line.startswith("# HELP "):
                family = line.split(" ", 3)[2]
                if family not in headers:
                    headers[family] = [line]
                    series[family] = []
            elif line.startswith("# TYPE "):
                if len(headers.get(family, ())) == 1:
                    headers[family].append(line)
            elif line and family in series:
                series[family].append(line)
    lines: list[str] = []
    for family, header in headers.items():
        lines += header
        lines += series[family]
    return "\n".join(lines) + "\n"
