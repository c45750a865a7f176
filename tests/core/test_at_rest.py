"""AtRest: the one door stored files go through; the first key, the marker, reloads after a rotation."""

from __future__ import annotations

import hashlib
import os
import pickle
import stat
from pathlib import Path

import pytest

from core.crypto import AtRest, MasterKeyError, TamperedFile, is_encrypted, rotate_master_key
from core.crypto.at_rest import KEY_CHECK_FILE, MARKER_FILE
from core.crypto.keys import MASTER_KEY_FILE, write_key_file
from core.errors import UsageError

MARKER = b"unique-marker-4f1c"


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "keys", tmp_path / "var"


@pytest.fixture
def at_rest(dirs: tuple[Path, Path]) -> AtRest:
    return AtRest.for_data_dir(*dirs)


def test_a_first_key_is_made_with_the_marker_and_reused_after(dirs: tuple[Path, Path]) -> None:
    keys, data = dirs
    first = AtRest.for_data_dir(keys, data)
    assert (keys / MASTER_KEY_FILE).is_file() and (data / MARKER_FILE).is_file()
    assert str(keys / MASTER_KEY_FILE) in (data / MARKER_FILE).read_text("utf-8")
    again = AtRest.for_data_dir(keys, data)
    assert again.keyring.current.key_id == first.keyring.current.key_id


def test_a_lost_key_once_files_were_sealed_stops_everything_naming_it(dirs: tuple[Path, Path]) -> None:
    keys, data = dirs
    AtRest.for_data_dir(keys, data)
    (keys / MASTER_KEY_FILE).unlink()
    with pytest.raises(MasterKeyError) as caught:
        AtRest.for_data_dir(keys, data)
    assert isinstance(caught.value, UsageError)
    assert str(keys / MASTER_KEY_FILE) in str(caught.value) and "backup" in str(caught.value)
    assert not (keys / MASTER_KEY_FILE).exists()  # never silently replaced


def test_a_key_that_is_not_the_data_dirs_stops_everything_before_anything_is_touched(
    dirs: tuple[Path, Path],
) -> None:
    keys, data = dirs
    AtRest.for_data_dir(keys, data).write_bytes(data / "report.csv", MARKER)
    before = {path: path.stat().st_mtime_ns for path in data.rglob("*")}
    (keys / MASTER_KEY_FILE).unlink()
    write_key_file(keys / MASTER_KEY_FILE, os.urandom(32))  # another valid key in its place
    with pytest.raises(MasterKeyError) as caught:
        AtRest.for_data_dir(keys, data)
    assert str(keys / MASTER_KEY_FILE) in str(caught.value) and "backup" in str(caught.value)
    assert {path: path.stat().st_mtime_ns for path in data.rglob("*")} == before


def test_the_key_check_follows_a_rotation(dirs: tuple[Path, Path]) -> None:
    keys, data = dirs
    old = AtRest.for_data_dir(keys, data).keyring.current.key_id
    rotate_master_key(keys, [data])
    assert AtRest.for_data_dir(keys, data).keyring.current.key_id != old  # the check opens


def test_a_key_made_before_a_crash_wrote_the_marker_is_kept(dirs: tuple[Path, Path]) -> None:
    keys, data = dirs
    made = AtRest.load(keys, data, create=True)
    assert not (data / MARKER_FILE).exists()
    assert AtRest.for_data_dir(keys, data).keyring.current.key_id == made.keyring.current.key_id
    assert (data / MARKER_FILE).exists()


def test_written_files_are_sealed_and_read_back(at_rest: AtRest, tmp_path: Path) -> None:
    path = tmp_path / "var" / "report.csv"
    data = MARKER * 10_000
    at_rest.write_bytes(path, data, mode=0o640)
    assert is_encrypted(path) and MARKER not in path.read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in path.parent.iterdir() if p.name not in (MARKER_FILE, KEY_CHECK_FILE)] == ["report.csv"]
    assert at_rest.read_bytes(path) == data
    assert AtRest.size(path) == len(data) < path.stat().st_size
    assert at_rest.digest(path) == (len(data), hashlib.sha256(data).hexdigest())
    with at_rest.open(path) as reader:
        reader.seek(len(data) - 3)
        assert reader.read() == MARKER[-3:]


def test_a_plaintext_file_from_before_is_read_as_it_is(at_rest: AtRest, tmp_path: Path) -> None:
    old = tmp_path / "old.csv"
    old.write_bytes(MARKER)
    assert at_rest.read_bytes(old) == MARKER and AtRest.size(old) == len(MARKER)
    with at_rest.open_fd(os.open(old, os.O_RDONLY), str(old)) as reader:
        assert reader.read() == MARKER


def test_a_tampered_file_is_never_read_as_plaintext(at_rest: AtRest, tmp_path: Path) -> None:
    path = tmp_path / "file.csv"
    at_rest.write_bytes(path, MARKER)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(TamperedFile):
        at_rest.read_bytes(path)


def test_after_a_rotation_a_holder_of_the_old_key_reads_and_seals_with_the_new(
    at_rest: AtRest, dirs: tuple[Path, Path]
) -> None:
    keys, data = dirs
    before = data / "before.csv"
    at_rest.write_bytes(before, MARKER)
    old_id = at_rest.keyring.current.key_id
    rotate_master_key(keys, [data])
    assert at_rest.read_bytes(before) == MARKER  # rewrapped under a key it did not hold: reloaded
    after = data / "after.csv"
    with at_rest.create(after) as writer:
        writer.write(MARKER)
    assert at_rest.keyring.current.key_id != old_id
    assert AtRest.for_data_dir(keys, data).read_bytes(after) == MARKER


def test_it_crosses_into_a_child_by_pickle_with_its_key_hidden(at_rest: AtRest, tmp_path: Path) -> None:
    path = tmp_path / "file.csv"
    at_rest.write_bytes(path, MARKER)
    copy = pickle.loads(pickle.dumps(at_rest))
    assert copy.read_bytes(path) == MARKER
    assert at_rest.keyring.current.secret.hex() not in repr(at_rest.keyring)
