"""``docs/BENCHMARKS.md``: the machine, the table of figures and the verdict on each target."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bench.stats import Row, Series, format_number, format_ratio, format_series
from bench.targets import Verdict

COLUMNS = ("#", "Benchmark", "Client, crypto", "Unit", "Ours: median (min–max)",
           "Peer", "Peer: median (min–max)", "Ours/peer", "CPU s ours / peer", "Errors ours / peer",
           "Notes")


def markdown_table(rows: Sequence[Row]) -> str:
    """One line per row; a row that could not run says why instead of giving figures."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        if row.unavailable:
            cells = [str(row.case), row.title, row.variant, row.unit, f"n/a ({row.unavailable})",
                     row.peer_name, "—", "—", "—", "—", row.notes_text]
        else:
            cpu = f"{format_number(row.ours.cpu_median)} / {format_number(row.peer.cpu_median)}"
            errors = f"{_errors(row.ours)} / {_errors(row.peer)}"
            cells = [str(row.case), row.title, row.variant, row.unit, format_series(row.ours),
                     row.peer_name, format_series(row.peer), format_ratio(row), cpu, errors,
                     row.notes_text]
        lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return "\n".join(lines)


def targets_table(verdicts: Sequence[Verdict]) -> str:
    lines = ["| Target | Status | Measured |", "|---|---|---|"]
    for verdict in verdicts:
        cells = (verdict.target.text, verdict.status, verdict.measured)
        lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return "\n".join(lines)


def render(rows: Sequence[Row], verdicts: Sequence[Verdict], machine: Mapping[str, str],
           method: Sequence[str], command: str) -> str:
    """The whole document; ``method`` lists how the figures were taken, one sentence each."""
    parts = [
        "# Benchmarks: sftp-inbox side by side with OpenSSH `internal-sftp`",
        "",
        (f"Produced by `{command}` (see `bench/`). Figures, not pass/fail: nothing in the test "
        "suite depends on them."),
        "",
        "## Machine",
        "",
        *(f"- **{label}:** {value}" for label, value in machine.items()),
        "",
        "## How",
        "",
        *(f"- {sentence}" for sentence in method),
        "",
        "## Targets (issue 5)",
        "",
        targets_table(verdicts),
        "",
        "## Figures",
        "",
        markdown_table(rows),
        "",
    ]
    return "\n".join(parts)


def _errors(series: Series) -> str:
    return str(series.errors) if series.samples else "—"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
