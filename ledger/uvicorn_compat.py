"""The one module that relies on uvicorn's internals; it checks them when imported.

uvicorn has no public way to run inside a process that owns its signals, nor to stop without
waiting for its next 0.1-second tick, so :class:`EmbeddedServer` overrides two of
``uvicorn.Server``'s methods. Upstream fixes that would remove this module: a
``Server(config, handle_signals=False)`` switch (before 0.29 one overrode
``install_signal_handlers`` instead), and an event that ``Server.should_exit`` sets instead of a flag polled
by ``main_loop``.

What it relies on, checked at import (:func:`problems`); if any of it moved, importing this module
raises :class:`UvicornIncompatible` and the daemon refuses to start with that message:

- ``Server.serve`` enters ``self.capture_signals()``, a context manager method with no parameters;
- ``Server._serve`` awaits ``self.main_loop()``, a coroutine method with no parameters, and
  ``Server.on_tick(counter)`` is the coroutine it calls, true when the server should exit;
- ``Server.__init__`` sets ``started`` and ``should_exit``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import uvicorn

from core.compat import IncompatibleDependency, method_problem

# uvicorn refreshes its Date header when the tick counter is a multiple of ten.
_TICKS_PER_HEADER_REFRESH = 10
_HEADER_REFRESH_SECONDS = 1.0


class UvicornIncompatible(IncompatibleDependency):
    """The installed uvicorn does not have the internals this module relies on."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("uvicorn", problems)


def problems(server: type[Any] = uvicorn.Server) -> list[str]:
    """What ``server`` (``uvicorn.Server`` by default) lacks of what :class:`EmbeddedServer`
    relies on; empty when everything is in place."""
    checks = (
        method_problem(server, "capture_signals", ["self"], coroutine=False),
        method_problem(server, "serve", None, coroutine=True, calls=["capture_signals"]),
        method_problem(server, "main_loop", ["self"], coroutine=True),
        method_problem(server, "_serve", None, coroutine=True, calls=["main_loop"]),
        method_problem(server, "on_tick", ["self", "counter"], coroutine=True),
        method_problem(server, "__init__", None, coroutine=False,
                       calls=["started", "should_exit"]),
    )
    return [problem for problem in checks if problem is not None]


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves SIGINT/SIGTERM to the process embedding it, and that
    notices :meth:`stop` at once instead of on its next 0.1-second poll."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._stopping = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def stop(self) -> None:
        self.should_exit = True
        self._stopping.set()

    async def main_loop(self) -> None:
        counter = 0
        while not await self.on_tick(counter):
            counter += _TICKS_PER_HEADER_REFRESH
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), _HEADER_REFRESH_SECONDS)


def _check() -> None:
    found = problems()
    if found:
        raise UvicornIncompatible(found)


_check()
