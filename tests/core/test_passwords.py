"""core/passwords.py: the dummy hash an unknown login is verified against."""

from __future__ import annotations

from core.config import Settings
from core.passwords import PasswordHasher
from tests.conftest import TEST_PASSWORD


def test_the_dummy_hash_is_made_when_first_needed_or_when_warmed(settings: Settings) -> None:
    """A process that never verifies a password (a run's children, most sftpctl commands) never
    pays for the dummy hash; a login server warms it, so its first unknown login costs what any
    other does."""
    lazy = PasswordHasher(settings.passwords)
    assert "_dummy" not in vars(lazy)
    assert lazy.verify(TEST_PASSWORD, None) is False
    assert "_dummy" in vars(lazy)

    warmed = PasswordHasher(settings.passwords)
    warmed.warm()
    dummy = vars(warmed)["_dummy"]
    assert dummy.startswith("$argon2id$")
    assert warmed.verify(TEST_PASSWORD, None) is False
    assert vars(warmed)["_dummy"] == dummy  # made once
    assert warmed.verify(TEST_PASSWORD, warmed.hash(TEST_PASSWORD)) is True
