"""The benchmark's arithmetic and its report, without any server: figures in, table and verdicts out."""

from __future__ import annotations

import argparse

import pytest

from bench.plan import parse_cases
from bench.report import markdown_table, render
from bench.stats import Row, Sample, Series, format_number, format_series
from bench.targets import TARGETS, judge, judge_all


def series(*values: float, errors: int = 0) -> Series:
    result = Series()
    for value in values:
        result.add(Sample(value, cpu_seconds=value / 10, errors=errors))
    return result


def row(key: str, ours: Series, peer: Series, unit: str = "MiB/s", higher: bool = True) -> Row:
    return Row(key=key, case=int(key.split(".")[0]), title="title", variant="sftp, pinned", unit=unit,
               higher_is_better=higher, peer_name="OpenSSH internal-sftp", ours=ours, peer=peer)


def test_series_reports_median_and_spread_of_its_runs() -> None:
    runs = series(30, 10, 20, 50, 40)
    assert (runs.median, runs.low, runs.high) == (30, 10, 50)
    assert runs.cpu_median == 3.0
    assert format_series(runs) == "30.0 (10.0–50.0)"


def test_a_failed_run_counts_as_an_error_and_is_not_a_figure() -> None:
    runs = series(10, 12, errors=1)
    runs.fail("ClientError: sftp exited 255")
    assert runs.median == 11
    assert runs.errors == 3


def test_a_side_without_samples_says_why() -> None:
    runs = Series()
    runs.fail("sshd missing")
    assert runs.median is None
    assert format_series(runs) == "n/a (sshd missing)"


def test_ratio_is_ours_over_the_peer() -> None:
    assert row("1.single.sftp.pinned", series(300), series(200)).ratio == pytest.approx(1.5)
    assert row("1.single.sftp.pinned", series(300), Series()).ratio is None


@pytest.mark.parametrize(("value", "text"), [(None, "—"), (1234.5, "1,234"), (12.345, "12.3"),
                                             (1.2345, "1.23"), (0.01234, "0.0123")])
def test_numbers_keep_three_significant_figures(value: float | None, text: str) -> None:
    assert format_number(value) == text


def test_throughput_target_needs_every_pinned_row_at_or_above_the_ratio() -> None:
    target = TARGETS[0]
    rows = [row("1.single.sftp.pinned", series(210), series(200)),
            row("1.batch.sftp.pinned", series(190), series(200)),
            row("1.batch.sftp.defaults", series(10), series(200))]
    assert judge(target, rows[:1]).met
    verdict = judge(target, rows)
    assert verdict.status == "not met"
    assert "0.95x" in verdict.measured
    assert "0.05x" not in verdict.measured, "rows with each server's defaults are not judged"


def test_login_target_is_a_ceiling_on_the_ratio() -> None:
    login = next(t for t in TARGETS if t.key_prefixes == ("4.login.",))
    assert judge(login, [row("4.login.asyncssh.pinned", series(90), series(170), "ms", False)]).met
    assert not judge(login, [row("4.login.asyncssh.pinned", series(120), series(170), "ms", False)]).met


def test_concurrency_target_fails_on_any_error_of_ours() -> None:
    concurrency = next(t for t in TARGETS if t.zero_errors)
    clean = row("3.c20.sftp.pinned", series(300), series(100))
    broken = row("3.c20.sftp.pinned", series(300, errors=1), series(100))
    assert judge(concurrency, [clean]).met
    assert not judge(concurrency, [broken]).met


def test_workers_scaling_is_ours_over_the_one_process_twin() -> None:
    scaling = next(t for t in TARGETS if t.key_prefixes == ("3.w2.",) and t.rule.value == "scaling_at_least")
    single = row("3.c20.sftp.pinned", series(100), series(50))
    assert judge(scaling, [single, row("3.w2.c20.sftp.pinned", series(170), series(50))]).met
    slow = judge(scaling, [single, row("3.w2.c20.sftp.pinned", series(150), series(50))])
    assert slow.status == "not met" and "1.50x" in slow.measured
    assert judge(scaling, [row("3.w2.c20.sftp.pinned", series(170), series(50))]).status.startswith("n/a")


def test_absolute_target_and_missing_rows() -> None:
    memory = next(t for t in TARGETS if t.key_prefixes == ("5.rss.",))
    assert judge(memory, [row("5.rss.asyncssh.pinned", series(180), series(900), "MiB RSS", False)]).met
    assert judge(memory, []).status == "n/a (not measured)"
    unavailable = row("5.rss.asyncssh.pinned", Series(), Series())
    unavailable.ours.fail("our server did not start")
    assert judge(memory, [unavailable]).status == "n/a (our server did not start)"


def test_a_quick_run_does_not_judge_absolute_targets() -> None:
    rows = [row("5.rss.asyncssh.pinned", series(180), series(900), "MiB RSS", False)]
    by_text = {verdict.target.text: verdict for verdict in judge_all(rows, quick=True)}
    memory = next(t for t in TARGETS if t.key_prefixes == ("5.rss.",))
    assert by_text[memory.text].status == "n/a (quick run: smaller sizes)"
    assert judge_all(rows)[TARGETS.index(memory)].met


def test_report_has_a_line_per_row_and_escapes_pipes() -> None:
    good = row("2.small.sftp.pinned", series(500, 520), series(250, 260), "files/s")
    missing = row("6.xls", Series(), Series())
    missing.unavailable = "ingest | readers missing"
    table = markdown_table([good, missing])
    lines = table.splitlines()
    assert len(lines) == 4
    assert "2.00x" in lines[2]
    assert "n/a (ingest \\| readers missing)" in lines[3]
    document = render([good, missing], judge_all([good, missing]), {"CPU": "test"}, ["alternating"],
                      "bench/run.sh")
    assert "- **CPU:** test" in document
    assert "| 1,000 small files: at least 1.0x OpenSSH's files/s | met |" in document


def test_case_list_is_checked() -> None:
    assert parse_cases("3,1,3") == (1, 3)
    with pytest.raises(argparse.ArgumentTypeError, match="cases are 1, 2"):
        parse_cases("9")
    with pytest.raises(argparse.ArgumentTypeError, match="expected case numbers"):
        parse_cases("one")


def test_the_processor_rejects_exactly_the_rows_the_generator_spoiled(tmp_path) -> None:
    from bench.processor_stages import processor
    from bench.signal_files import csv_file

    path = tmp_path / "signals.csv"
    written = csv_file(path, 200_000)
    times = processor()(path)
    assert written.bad > 0
    assert (times.rows, times.bad) == (written.rows, written.bad)
    assert times.total >= times.read + times.validate
