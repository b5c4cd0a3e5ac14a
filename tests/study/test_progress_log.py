"""Progress reaches a log file too: timed plain lines when the output is not a terminal."""

from __future__ import annotations

import io
import time

from rich.console import Console

from research.study.progress import study_progress


def test_progress_prints_timed_lines_to_a_file() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=False, width=100)
    with study_progress(console, interval_s=0.5) as progress:
        task = progress.add_task("ingest + purge cheshire", total=4)
        progress.advance(task, 2)
        time.sleep(2.2)
        progress.advance(task, 2)
        time.sleep(1.5)
    text = buffer.getvalue()
    assert "ingest + purge cheshire: 2/4 (50%)" in text
    assert "ingest + purge cheshire: 4/4 (100%)" in text


def test_a_terminal_gets_no_extra_lines() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=100)
    with study_progress(console, interval_s=0.2) as progress:
        task = progress.add_task("designs", total=2)
        progress.advance(task)
        time.sleep(1.2)
    assert "designs: 1/2" not in buffer.getvalue()
