"""The stores every entry point opens, built once from the settings."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from core.config import Settings
from core.crypto import AtRest
from core.db import Database
from core.passwords import PasswordHasher
from core.tenants import TenantStore, open_state
from core.uploads import UploadStore
from ingest import Ingest
from sftpd.defender import Defender


@dataclass
class Context:
    """Lazily opened parts: a CLI command that only lists tenants never builds the pipeline."""

    settings: Settings

    @cached_property
    def db(self) -> Database:
        return open_state(self.settings.state_location)

    @cached_property
    def hasher(self) -> PasswordHasher:
        return PasswordHasher(self.settings.passwords)

    @cached_property
    def tenants(self) -> TenantStore:
        return TenantStore(self.db, self.settings.tenants_dir, self.hasher, self.settings.retention)

    @cached_property
    def uploads(self) -> UploadStore:
        return UploadStore(self.db)

    @cached_property
    def defender(self) -> Defender:
        return Defender(self.db, self.settings.defender)

    @cached_property
    def at_rest(self) -> AtRest:
        """The master key every stored file is sealed and read with; a first one is made only
        for a data dir where nothing was sealed yet (``AtRest.for_data_dir``)."""
        return AtRest.for_data_dir(self.settings.server.keys_dir, self.settings.data_dir)

    @cached_property
    def ingest(self) -> Ingest:
        return Ingest(self.settings, self.db, self.tenants, self.uploads, self.at_rest)

    def close(self) -> None:
        if "db" in self.__dict__:
            self.db.close()
