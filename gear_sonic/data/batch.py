"""Progress and summaries for batch data scripts, and a worker pool that never loses a failure.

Every batch script (CSV conversion, BVH extraction, PKL import, filtering) reports the same way:
a progress bar with clips done, rate and ETA while running, then a summary of what was
converted and what was skipped with the reason, and a non-zero exit code if nothing converted.
"""

from __future__ import annotations

import multiprocessing
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from tqdm import tqdm


@dataclass
class BatchReport:
    """Outcome of a batch run: converted names, skipped names with reasons, frames and time."""

    description: str = "converted"
    converted: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    frames: int = 0
    elapsed_s: float = 0.0

    @property
    def exit_code(self) -> int:
        """0 when at least one item converted, 1 otherwise (including an empty input)."""
        return 0 if self.converted else 1

    def summary_text(self, max_listed: int = 20) -> str:
        total = len(self.converted) + len(self.skipped)
        rate = f", {self.frames / self.elapsed_s:,.0f} frames/s" if self.elapsed_s > 0 and self.frames else ""
        lines = [
            f"{self.description}: {len(self.converted)} of {total} "
            f"({self.frames:,} frames in {self.elapsed_s:.1f} s{rate}); skipped {len(self.skipped)}"
        ]
        if self.skipped:
            reasons = Counter(_reason_kind(r) for _, r in self.skipped)
            lines.append("skipped by reason: " + ", ".join(f"{kind} x{n}" for kind, n in reasons.most_common()))
            for name, reason in self.skipped[:max_listed]:
                lines.append(f"  skipped {name}: {reason}")
            if len(self.skipped) > max_listed:
                lines.append(f"  ... and {len(self.skipped) - max_listed} more")
        if not self.converted:
            lines.append("nothing converted")
        return "\n".join(lines)


def _reason_kind(reason: str) -> str:
    """A grouping key for a skip reason: file name, line/column, quoted values and numbers removed."""
    tail = reason.split(": ", 1)[-1] if ": " in reason else reason
    tail = re.sub(r"^line \d+(, column [^:]+)?: ", "", tail)
    tail = re.sub(r"'[^']*'|\"[^\"]*\"", "'...'", tail)
    tail = re.sub(r"\d+(\.\d+)?", "N", tail)
    return tail.split(" (")[0][:80]


class BatchProgress:
    """Progress bar (clips done, rate, ETA) plus the report; use as a context manager.

    >>> with BatchProgress(total=len(files), description="converted") as progress:
    ...     progress.converted("clip_a", frames=300)
    ...     progress.skipped("clip_b", "clip_b.csv: line 4: 'x' is not a number")
    >>> sys.exit(progress.finish())
    """

    def __init__(
        self,
        total: int,
        description: str = "converted",
        unit: str = "clip",
        enabled: bool = True,
        stream: TextIO | None = None,
    ):
        self.report = BatchReport(description=description)
        self._start = time.perf_counter()
        self._closed = False
        self._bar = tqdm(
            total=total,
            desc=description,
            unit=unit,
            disable=not enabled,
            file=stream if stream is not None else sys.stderr,
            mininterval=0.5,
            dynamic_ncols=True,
        )

    def converted(self, name: str, frames: int = 0) -> None:
        self.report.converted.append(name)
        self.report.frames += int(frames)
        self._bar.update(1)

    def skipped(self, name: str, reason: str) -> None:
        self.report.skipped.append((name, reason))
        self._bar.set_postfix(skipped=len(self.report.skipped), refresh=False)
        self._bar.update(1)

    def close(self) -> BatchReport:
        if not self._closed:
            self.report.elapsed_s = time.perf_counter() - self._start
            self._bar.close()
            self._closed = True
        return self.report

    def finish(self, stream: TextIO | None = None) -> int:
        """Close the bar, print the summary, return the exit code for the script."""
        report = self.close()
        print(report.summary_text(), file=stream if stream is not None else sys.stdout)
        return report.exit_code

    def __enter__(self) -> "BatchProgress":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


@dataclass
class TaskResult:
    """What a worker returned for one item: a value, or the reason it failed."""

    item: Any
    value: Any = None
    error: str | None = None


def _run_task(task: tuple[Callable[[Any], Any], Any]) -> TaskResult:
    function, item = task
    try:
        return TaskResult(item, function(item))
    except Exception as error:  # a bad file must not stop the batch; the reason goes in the summary
        from gear_sonic.data.clip import MotionFormatError

        message = str(error) if isinstance(error, (MotionFormatError, OSError)) else f"{type(error).__name__}: {error}"
        return TaskResult(item, None, message)


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def parallel_map(
    function: Callable[[Any], Any], items: Iterable[Any], num_workers: int = 1, ordered: bool = True
) -> Iterator[TaskResult]:
    """Apply a module-level `function` to items in `num_workers` processes, yielding TaskResults.

    Exceptions inside the function become `TaskResult.error` strings, so one bad file is
    reported rather than ending the run. With num_workers <= 1 everything runs in-process.
    Workers are spawned (not forked) so they start clean of the parent's thread pools.
    """
    tasks = ((function, item) for item in items)
    if num_workers <= 1:
        yield from map(_run_task, tasks)
        return
    context = multiprocessing.get_context("spawn")
    with context.Pool(num_workers, initializer=_init_worker) as pool:
        mapper = pool.imap if ordered else pool.imap_unordered
        yield from mapper(_run_task, tasks, chunksize=1)
