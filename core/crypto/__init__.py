"""Encryption at rest: files sealed with AES-256-GCM in authenticated chunks under a master key.

``sealed`` is the file format (writer, reader, sizes), ``keys`` the master key in ``keys/``,
``rotation`` the master key's rotation, ``at_rest`` the one door the rest of the product
writes and reads stored files through.
"""

from core.crypto.at_rest import AtRest
from core.crypto.keys import Keyring, MasterKey, MasterKeyError, load_keyring
from core.crypto.rotation import RotationReport, rotate_master_key, rotation_in_progress
from core.crypto.sealed import (
    CHUNK_SIZE,
    EncryptedReader,
    EncryptedWriter,
    TamperedFile,
    is_encrypted,
    plaintext_size,
)

__all__ = [
    "CHUNK_SIZE",
    "AtRest",
    "EncryptedReader",
    "EncryptedWriter",
    "Keyring",
    "MasterKey",
    "MasterKeyError",
    "RotationReport",
    "TamperedFile",
    "is_encrypted",
    "load_keyring",
    "plaintext_size",
    "rotate_master_key",
    "rotation_in_progress",
]
