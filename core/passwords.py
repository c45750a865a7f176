"""Password hashing with argon2id (passlib over argon2-cffi), and strong generated secrets."""

from __future__ import annotations

import functools
import secrets
import string
from typing import TYPE_CHECKING

from passlib.hash import argon2

from core.config import PasswordSettings
from core.errors import UsageError

if TYPE_CHECKING:
    from passlib.utils.handlers import GenericHandler

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024
_ALPHABET = string.ascii_letters + string.digits


class PasswordError(ValueError, UsageError):
    """A password that does not meet the policy; the message says why."""


class PasswordHasher:
    """Hashes and verifies passwords; an unknown user is verified against a dummy hash.

    Verifying the dummy costs exactly what a real check costs, so the time of a failed login does
    not tell an attacker whether the user exists.
    """

    def __init__(self, settings: PasswordSettings) -> None:
        self._scheme: type[GenericHandler] = argon2.using(
            type="ID",
            memory_cost=settings.argon2_memory_kib,
            rounds=settings.argon2_time_cost,
            parallelism=settings.argon2_parallelism,
        )

    @functools.cached_property
    def _dummy(self) -> str:
        # Made when first needed: most processes (a run's children, sftpctl) never verify a
        # password. A login server makes it at start (:meth:`warm`).
        return self._scheme.hash(secrets.token_urlsafe(16))

    def warm(self) -> None:
        """Make the dummy hash now, so the first unknown login costs what any other does."""
        _ = self._dummy

    def hash(self, password: str) -> str:
        check_policy(password)
        return self._scheme.hash(password)

    def verify(self, password: str, stored: str | None) -> bool:
        """True if ``password`` matches ``stored``; ``None`` (no such login) is always false."""
        if len(password) > MAX_PASSWORD_LENGTH:
            password = password[:MAX_PASSWORD_LENGTH]
        if stored is None:
            dummy = self._dummy  # first: making it may load passlib's backend, which replaces verify
            self._scheme.verify(password, dummy)
            return False
        try:
            return self._scheme.verify(password, stored)
        except ValueError:
            return False

    def needs_rehash(self, stored: str) -> bool:
        return self._scheme.needs_update(stored)


def check_policy(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordError(f"password too short: at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise PasswordError(f"password too long: at most {MAX_PASSWORD_LENGTH} characters")
    if any(ch in password for ch in "\r\n\x00"):
        raise PasswordError("password must not contain line breaks or NUL")


def generate_password(length: int = 20) -> str:
    """A random password of letters and digits: ~119 bits at 20 characters, easy to paste."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def generate_token() -> str:
    return secrets.token_hex(32)
