"""The limited child: every way it can fail reaches the parent as a reason, and the parent lives on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.config import MiB
from ingest.rows.readers import read_table
from ingest.sandbox import INTERNAL_ERROR, Channel, Limits, Worker, WorkerFailed, run_limited, start_limited
from tests.ingest import hostile

LIMITS = Limits(memory_bytes=1024 * MiB, cpu_seconds=2, wall_seconds=20)


# The children's work: module-level, so the fork server can import it by name.

def double(value: int) -> int:
    return value * 2


def pid_of_child(_: None) -> int:
    return os.getpid()


def fail(message: str) -> None:
    raise ValueError(message)


def abort(_: None) -> None:
    os.abort()


def allocate(mib: int) -> int:
    return len(bytearray(mib * MiB))


def spin(_: None) -> None:
    while True:
        pass


def sleep(seconds: float) -> None:
    time.sleep(seconds)


def read(path: Path) -> list[str]:
    return read_table(path).header


def doubling(count: int, channel: Channel) -> None:
    """Answer ``count`` messages with their double, then return; stop early if told None."""
    for _ in range(count):
        value = channel.receive()
        if value is None:
            return
        channel.send(value * 2)


def answer_then_fail(message: str, channel: Channel) -> None:
    channel.send("first")
    raise ValueError(message)


def answer_then_sleep(seconds: float, channel: Channel) -> None:
    channel.send("first")
    time.sleep(seconds)


def test_a_result_comes_back_from_another_process() -> None:
    assert run_limited(double, 21, LIMITS) == 42
    assert run_limited(pid_of_child, None, LIMITS) != os.getpid()


def test_an_exception_becomes_an_internal_error_without_details() -> None:
    with pytest.raises(WorkerFailed) as failed:
        run_limited(fail, "secret detail", LIMITS)
    assert failed.value.kind == "error" and "internal error" in failed.value.reason
    assert "secret" not in failed.value.reason


def test_the_childs_error_is_logged_for_operators_with_what_failed_and_where() -> None:
    """The fork server never configured logging: without the child doing so, the log would say
    ``sandbox.error`` and nothing else. A process of its own, since children write to the fork
    server's stderr, which is the stderr of whichever test started it."""
    script = ("from core.logs import configure_logging; from ingest.sandbox import run_limited, WorkerFailed;"
              "from tests.ingest.test_sandbox import LIMITS, fail; configure_logging('INFO')\n"
              "try: run_limited(fail, 'the detail', LIMITS)\nexcept WorkerFailed: pass")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True,
                          cwd=Path(__file__).parents[2])
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    [entry] = [line for line in lines if line["event"] == "sandbox.error"]
    assert entry["error"] == "ValueError: the detail"
    assert "in fail" in entry["traceback"]


def test_an_abort_is_a_memory_failure_and_the_parent_lives() -> None:
    with pytest.raises(WorkerFailed) as failed:
        run_limited(abort, None, LIMITS)
    assert failed.value.kind == "memory" and "1024 MiB" in failed.value.reason
    assert run_limited(double, 1, LIMITS) == 2


def test_memory_beyond_the_limit_is_refused_inside_the_child() -> None:
    with pytest.raises(WorkerFailed) as failed:
        run_limited(allocate, 2048, LIMITS)
    assert failed.value.kind == "memory"
    assert run_limited(allocate, 16, LIMITS) == 16 * MiB


def test_a_spinning_child_is_stopped_by_its_cpu_limit() -> None:
    started = time.monotonic()
    with pytest.raises(WorkerFailed) as failed:
        run_limited(spin, None, Limits(LIMITS.memory_bytes, cpu_seconds=1, wall_seconds=30))
    assert failed.value.kind == "cpu" and "1 seconds of processing time" in failed.value.reason
    assert time.monotonic() - started < 15


def test_a_stalled_child_is_killed_at_its_wall_time() -> None:
    started = time.monotonic()
    with pytest.raises(WorkerFailed) as failed:
        run_limited(sleep, 60, Limits(LIMITS.memory_bytes, cpu_seconds=5, wall_seconds=0.5))
    assert failed.value.kind == "time" and time.monotonic() - started < 10


def test_the_17_billion_cell_workbook_aborts_the_reader_in_the_child_only(tmp_path: Path) -> None:
    """The 1.6 KB file that used to abort the daemon: calamine really asks for 512 GiB here."""
    path = tmp_path / "far.xlsx"
    path.write_bytes(hostile.far_cell(declare=False))
    with pytest.raises(WorkerFailed) as failed:
        run_limited(read, path, LIMITS)
    assert failed.value.kind == "memory" and "stray cell" in failed.value.reason
    good = tmp_path / "good.xlsx"
    good.write_bytes(hostile.small_table(["transaction_id"], [["T1"]]))
    assert run_limited(read, good, LIMITS) == ["transaction_id"]


def test_an_xls_far_cell_is_held_to_the_memory_limit(tmp_path: Path) -> None:
    """No cheap pre-check reads an XLS's range: the child's limit is what holds it."""
    path = tmp_path / "far.xls"
    path.write_bytes(hostile.far_cell_xls())
    with pytest.raises(WorkerFailed) as failed:
        run_limited(read, path, Limits(512 * MiB, cpu_seconds=20, wall_seconds=60))
    assert failed.value.kind == "memory"


def test_the_fork_server_preloads_what_the_main_script_is_made_of(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every child runs the parent's main again; an entry-point script's module must be loaded in
    the fork server already, or each file would import the daemon anew (CPython gh-126631)."""
    import sys
    import types

    import ingest.prepare as prepare
    import ingest.sandbox as sandbox

    script = types.ModuleType("__main__")
    script.__dict__.update(main=prepare.prepare_file, sys=sys, re=types)
    monkeypatch.setitem(sys.modules, "__main__", script)
    assert sandbox._main_modules() == ["ingest.prepare", "sys", "types"]
    module = types.ModuleType("__main__")
    module.__spec__ = types.SimpleNamespace(name="service.daemon")  # type: ignore[assignment]
    module.__dict__.update(run_limited=run_limited, main=lambda: None)
    monkeypatch.setitem(sys.modules, "__main__", module)
    assert sandbox._main_modules() == ["ingest.sandbox", "tests.ingest.test_sandbox"]
    module.__spec__ = types.SimpleNamespace(name="pytest.__main__")  # type: ignore[assignment]
    assert sandbox._main_modules() == []


def test_a_worker_talks_with_its_parent_and_then_is_done() -> None:
    worker = start_limited(doubling, 2, LIMITS)
    try:
        assert worker.pid != os.getpid()
        worker.send(1)
        assert worker.receive() == 2
        worker.send(21)
        assert worker.receive() == 42
        assert worker.receive() is Worker.DONE
        assert worker.receive() is Worker.DONE
        worker.send(3)  # to a child gone: nothing happens
    finally:
        worker.close()


def test_a_worker_told_to_stop_is_done_without_more_messages() -> None:
    worker = start_limited(doubling, 5, LIMITS)
    try:
        worker.send(None)
        assert worker.receive() is Worker.DONE
    finally:
        worker.close()


def test_a_worker_that_raises_after_a_message_is_a_failure_after_it() -> None:
    worker = start_limited(answer_then_fail, "secret detail", LIMITS)
    try:
        assert worker.receive() == "first"
        with pytest.raises(WorkerFailed) as failed:
            worker.receive()
        assert failed.value.kind == "error" and "secret" not in failed.value.reason
        assert failed.value.reason == INTERNAL_ERROR  # no task named: a file's words
    finally:
        worker.close()


@pytest.mark.parametrize("cpu_seconds, kind", [(100.0, "crash"), (0.2, "cpu")])
def test_a_child_killed_from_outside_is_a_crash_unless_it_could_have_reached_its_cpu_limit(
    cpu_seconds: float, kind: str,
) -> None:
    """SIGKILL is also the hard CPU limit: it counts as that only once the child could have used
    its CPU time on this machine's cores; sooner, it was the OOM killer or an operator's kill -9,
    which was reported as the file needing too much processing time."""
    worker = start_limited(answer_then_sleep, 60, Limits(LIMITS.memory_bytes, cpu_seconds, wall_seconds=30))
    try:
        assert worker.receive() == "first"
        time.sleep(0.5)  # as long as a child on one core needs to use 0.2 s of CPU time, and more
        assert worker.pid is not None
        os.kill(worker.pid, signal.SIGKILL)
        with pytest.raises(WorkerFailed) as failed:
            worker.receive()
        assert failed.value.kind == kind
        if kind == "crash":
            assert failed.value.reason.endswith("stopped unexpectedly (exit status -9)")
    finally:
        worker.close()


def test_a_worker_that_runs_past_its_wall_time_is_killed_and_its_task_named() -> None:
    worker = start_limited(answer_then_sleep, 60, Limits(LIMITS.memory_bytes, cpu_seconds=5, wall_seconds=0.5),
                           task="writing 3 rows")
    try:
        assert worker.receive() == "first"
        with pytest.raises(WorkerFailed) as failed:
            worker.receive()
        assert failed.value.kind == "time"
        assert failed.value.reason == "writing 3 rows took longer than the 0.5 seconds allowed"
        assert worker.pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(worker.pid, 0)  # killed and reaped
    finally:
        worker.close()
