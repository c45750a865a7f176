"""Declared checks on the internals of a library the product subclasses or patches.

Each seam (``sftpd/asyncssh_compat.py``, ``ledger/uvicorn_compat.py``) is the one module that
touches its library's private names. It lists what it relies on and checks it when imported; a
release that moved any of it stops the process at start with :class:`IncompatibleDependency`,
naming the version and what moved, instead of misbehaving later (an upload acknowledged to the
client and then discarded). The daemon reports it as one line and exits non-zero.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from core.errors import SftpInboxError


class IncompatibleDependency(SftpInboxError, RuntimeError):
    """A library's internals are not what this release was verified with: refuse to start.

    Under the error root (its message is for the operator) and of none of its kinds: neither
    the request nor the state is at fault, the installation is."""

    def __init__(self, library: str, problems: Sequence[str]) -> None:
        self.library = library
        self.version = installed_version(library)
        self.problems = list(problems)
        super().__init__(
            f"{library} {self.version} is not supported: " + "; ".join(self.problems)
            + f". Install a release of {library} within the bounds in pyproject.toml."
        )


def installed_version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "(version unknown)"


def method_problem(
    owner: type[Any],
    name: str,
    parameters: Sequence[str] | None,
    *,
    coroutine: bool,
    calls: Sequence[str] = (),
) -> str | None:
    """Why ``owner.name`` is not the method relied on (exists, same kind, the same parameters
    unless None, and its code still names ``calls``), or None when it is."""
    where = f"{owner.__name__}.{name}"
    function: Callable[..., Any] | None = getattr(owner, name, None)
    if function is None:
        return f"{where} is missing"
    function = inspect.unwrap(function)
    if coroutine != inspect.iscoroutinefunction(function):
        return f"{where} is {'no longer' if coroutine else 'now'} a coroutine function"
    try:
        found = list(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        found = []
    if parameters is not None and found != list(parameters):
        return f"{where} takes ({', '.join(found)}), not ({', '.join(parameters)})"
    missing = [called for called in calls if called not in code_names(function)]
    if missing:
        return f"{where} no longer uses {', '.join(missing)}"
    return None


def code_names(function: object) -> frozenset[str]:
    """The global and attribute names a function's own code refers to."""
    code = getattr(inspect.unwrap(function), "__code__", None)  # type: ignore[arg-type]
    return frozenset(code.co_names) if code is not None else frozenset()
