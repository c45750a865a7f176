"""What ``sftpctl run`` prints while it runs: one line per event, and a progress bar on a terminal.

Piped or redirected, every event is one plain ``event key=value ...`` line, easy to grep and
stable for scripts (``file.progress`` comes at most once a second per file). On a terminal the
``file.progress`` events redraw one status line instead (a bar, rows per second and the time
left), and every other event is printed above it. A reader that goes away (``| head``) stops
the printing, never the run: the run still finishes its work.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TextIO

from core.display import text_for_terminal

BAR_WIDTH = 24


class RunPrinter:
    """A ``Progress`` callback (see ``ingest.processor.Progress``) that prints to ``stream``."""

    def __init__(self, stream: TextIO | None = None, terminal: bool | None = None,
                 on_gone: Callable[[], None] | None = None) -> None:
        self.stream = stream or sys.stdout
        self.terminal = self.stream.isatty() if terminal is None else terminal
        self.gone = False
        self._on_gone = on_gone
        self._status = ""

    def __call__(self, event: str, **fields: Any) -> None:
        if self.terminal and event == "file.progress":
            self._write(lambda: self._show_status(status_line(fields)))
            return
        detail = " ".join(f"{key}={value}" for key, value in fields.items())
        self.note(f"{event} {detail}".rstrip())

    def note(self, text: str) -> None:
        """A line of free text, above the status line."""
        def write() -> None:
            self._clear_status()
            self.stream.write(text_for_terminal(text) + "\n")
            self.stream.flush()
        self._write(write)

    def _write(self, write: Callable[[], None]) -> None:
        if self.gone:
            return
        try:
            write()
        except BrokenPipeError:
            self.gone = True
            if self._on_gone is not None:
                self._on_gone()

    def _show_status(self, line: str) -> None:
        padding = " " * max(0, len(self._status) - len(line))
        self.stream.write("\r" + line + padding)
        self.stream.flush()
        self._status = line

    def _clear_status(self) -> None:
        if self._status:
            self.stream.write("\r" + " " * len(self._status) + "\r")
            self._status = ""


def status_line(fields: dict[str, Any]) -> str:
    """``acme in/sales.csv [#########-----] 12,000/25,000  5,210 rows/s  3s left``."""
    done, total = int(fields["done"]), int(fields["total"])
    filled = BAR_WIDTH * done // total if total else BAR_WIDTH
    bar = "#" * filled + "-" * (BAR_WIDTH - filled)
    eta = fields.get("eta_seconds")
    left = "time left unknown" if eta is None else f"{duration(float(eta))} left"
    name = text_for_terminal(f"{fields['tenant']} {fields['file']}")
    return f"{name} [{bar}] {done:,}/{total:,}  {float(fields['rate']):,.0f} rows/s  {left}"


def duration(seconds: float) -> str:
    """``42s``, ``7m05s``, ``3h20m``: as precise as a person needs."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
