"""sftpctl run's printer: plain lines when piped, one redrawn status line on a terminal."""

from __future__ import annotations

import io

from service.progress import RunPrinter, duration, status_line

PROGRESS = {"tenant": "acme", "file": "in/sales.csv", "upload": 3, "done": 12_000, "total": 24_000,
            "rate": 5210.4, "eta_seconds": 2.3}


def test_piped_every_event_is_one_plain_line() -> None:
    out = io.StringIO()
    printer = RunPrinter(out, terminal=False)
    printer("file.progress", **PROGRESS)
    printer("file.done", tenant="acme", file="in/sales.csv", state="posted")
    assert out.getvalue().splitlines() == [
        "file.progress tenant=acme file=in/sales.csv upload=3 done=12000 total=24000 rate=5210.4 eta_seconds=2.3",
        "file.done tenant=acme file=in/sales.csv state=posted"]


def test_on_a_terminal_progress_redraws_one_line_and_other_events_print_above_it() -> None:
    out = io.StringIO()
    printer = RunPrinter(out, terminal=True)
    printer("file.progress", **PROGRESS)
    printer("file.progress", **{**PROGRESS, "done": 24_000, "eta_seconds": 0.0})
    printer("file.done", tenant="acme", file="in/sales.csv", state="posted")
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("file.done tenant=acme file=in/sales.csv state=posted\n")
    assert "\r" + status_line(PROGRESS) in text
    assert status_line(PROGRESS) == ("acme in/sales.csv [############------------] 12,000/24,000"
                                     "  5,210 rows/s  2s left")


def test_status_line_before_the_first_row_and_names_escaped() -> None:
    line = status_line({**PROGRESS, "file": "in/\x1b[2Jx.csv", "done": 0, "rate": 0.0, "eta_seconds": None})
    assert "\x1b" not in line and line.endswith("0 rows/s  time left unknown")


def test_durations_read_as_people_say_them() -> None:
    assert [duration(s) for s in (0.4, 42, 425, 12_000)] == ["0s", "42s", "7m05s", "3h20m"]


class ClosedPipe(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError


def test_a_reader_that_goes_away_silences_the_printer_once() -> None:
    gone: list[bool] = []
    printer = RunPrinter(ClosedPipe(), terminal=False, on_gone=lambda: gone.append(True))
    printer("run.started", run=1)
    printer("file.progress", **PROGRESS)
    printer.note("more")
    assert printer.gone and gone == [True]
