"""The study's progress display: a rich progress bar on a terminal, timed lines in a log file.

Rich draws a live bar only on a terminal; when the output goes to a file (``anprfed study run
... > study.log``, a batch job) it prints the bars once, when they stop, which says nothing
during an hour-long run. :func:`study_progress` returns the same ``rich.progress.Progress``
either way; when the console is not a terminal, a background thread also prints one plain
line per task that moved since the last line, every ``interval_s`` seconds (and when a task
finishes), e.g. ``[  312s] ingest + purge greater-manchester: 3/6 (50%)``. Only task
descriptions and counts are printed, never study data.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

LOG_INTERVAL_S = 30.0


def _line(elapsed: float, description: str, completed: float, total: float | None) -> str:
    if total:
        return (
            f"[{elapsed:6.0f}s] {description}: {completed:,.0f}/{total:,.0f} "
            f"({100 * completed / total:.0f}%)"
        )
    return f"[{elapsed:6.0f}s] {description}: {completed:,.0f}"


@contextmanager
def study_progress(
    console: Console | None, interval_s: float = LOG_INTERVAL_S
) -> Iterator[Progress]:
    """A progress display for the study; timed plain lines when ``console`` is not a terminal."""
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=console is None,
    )
    stop = threading.Event()
    thread = None
    with progress:
        if console is not None and not console.is_terminal:
            thread = threading.Thread(
                target=_log_lines, args=(progress, console, interval_s, stop), daemon=True
            )
            thread.start()
        try:
            yield progress
        finally:
            stop.set()
            if thread is not None:
                thread.join(timeout=5)


def _log_lines(
    progress: Progress, console: Console, interval_s: float, stop: threading.Event
) -> None:
    started = time.monotonic()
    shown: dict[int, tuple[str, float]] = {}
    next_due = started + interval_s
    while not stop.wait(1.0):
        now = time.monotonic()
        for task in list(progress.tasks):
            state = (task.description, task.completed)
            finished_now = task.finished and shown.get(task.id, ("", -1.0))[1] != task.completed
            if (now >= next_due and shown.get(task.id) != state) or finished_now:
                console.print(
                    _line(now - started, task.description, task.completed, task.total),
                    markup=False,
                    highlight=False,
                )
                shown[task.id] = state
        if now >= next_due:
            next_due = now + interval_s


STAGE_NAMES = {"read": "read days", "build": "build buckets"}


def example_progress(progress: Progress, label: str) -> Callable[[str, int, int], None]:
    """A callback for ``client_force.force_dataset.load_force_dataset(progress=...)``: one task
    for ``label`` whose description names the stage (days read, buckets built)."""
    task = progress.add_task(f"examples {label}", total=None)

    def update(stage: str, done: int, total: int) -> None:
        name = STAGE_NAMES.get(stage, stage)
        progress.update(task, description=f"examples {label}: {name}", completed=done, total=total)

    return update
