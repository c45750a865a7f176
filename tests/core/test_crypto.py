"""Encryption at rest: the chunked AES-256-GCM format, the master key, and its rotation.

Real files on disk and the real cipher throughout; tampering is done to the bytes on disk.
"""

from __future__ import annotations

import fcntl
import io
import os
import random
import shutil
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.crypto import (
    CHUNK_SIZE,
    EncryptedReader,
    EncryptedWriter,
    Keyring,
    MasterKeyError,
    TamperedFile,
    is_encrypted,
    load_keyring,
    plaintext_size,
    rotate_master_key,
    rotation_in_progress,
)
from core.crypto.keys import MASTER_KEY_FILE, RETIRING_KEY_FILE, create_key_file, read_key_file
from core.crypto.rotation import ROTATION_LOCK_FILE, RotationBusy
from core.crypto.sealed import HEADER_BYTES, SLOT_OFFSET, TAG_BYTES, rewrap
from core.errors import Conflict, SftpInboxError, UsageError

SEALED = CHUNK_SIZE + TAG_BYTES


@pytest.fixture
def keyring(tmp_path: Path) -> Keyring:
    return load_keyring(tmp_path / "keys", create=True)


def seal(path: Path, data: bytes, keyring: Keyring, **options: int) -> Path:
    with EncryptedWriter.create(path, keyring.current, **options) as writer:
        writer.write(data)
    return path


def unseal(path: Path, keyring: Keyring) -> bytes:
    with EncryptedReader.open(path, keyring) as reader:
        return reader.read()


def flip(path: Path, offset: int, bit: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))


# Round trips


@pytest.mark.parametrize(
    "size", [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE, 5_000_000]
)
def test_round_trip(tmp_path: Path, keyring: Keyring, size: int) -> None:
    data = random.Random(size).randbytes(size)
    path = seal(tmp_path / "file.enc", data, keyring)
    assert unseal(path, keyring) == data
    chunks = max(1, -(-size // CHUNK_SIZE))
    assert path.stat().st_size == HEADER_BYTES + size + chunks * TAG_BYTES
    assert plaintext_size(path) == size
    with EncryptedReader.open(path, keyring) as reader:
        assert reader.plaintext_size() == size


def test_streaming_writes_in_odd_pieces_hold_at_most_a_chunk(tmp_path: Path, keyring: Keyring) -> None:
    data = random.Random(1).randbytes(5 * CHUNK_SIZE + 123)
    rng = random.Random(2)
    path = tmp_path / "pieces.enc"
    writer = EncryptedWriter.create(path, keyring.current)
    offset = 0
    while offset < len(data):
        piece = rng.choice([1, 7, 4095, CHUNK_SIZE - 3, CHUNK_SIZE + 5, 3 * CHUNK_SIZE])
        assert writer.write(memoryview(data)[offset : offset + piece]) == len(data[offset : offset + piece])
        offset += piece
        assert len(writer._buffer) <= CHUNK_SIZE
    assert writer.plaintext_written == len(data)
    writer.close()
    assert unseal(path, keyring) == data


def test_random_access_reads_match_the_plaintext(tmp_path: Path, keyring: Keyring) -> None:
    data = random.Random(3).randbytes(4 * CHUNK_SIZE + 999)
    path = seal(tmp_path / "file.enc", data, keyring)
    rng = random.Random(4)
    with EncryptedReader.open(path, keyring) as reader:
        for _ in range(200):
            offset = rng.randrange(0, len(data) + 10)
            count = rng.choice([0, 1, 17, CHUNK_SIZE, 2 * CHUNK_SIZE + 3])
            assert reader.seek(offset) == offset
            assert reader.read(count) == data[offset : offset + count]
            assert reader.tell() == min(offset + count, max(offset, len(data)))
        assert reader.seek(-10, io.SEEK_END) == len(data) - 10
        assert reader.read() == data[-10:]
        reader.seek(5)
        assert reader.seek(3, io.SEEK_CUR) == 8
        with pytest.raises(ValueError, match="negative"):
            reader.seek(-1)


def test_the_reader_is_a_raw_io_that_buffered_readers_and_copies_use(tmp_path: Path, keyring: Keyring) -> None:
    data = random.Random(5).randbytes(2 * CHUNK_SIZE + 77)
    path = seal(tmp_path / "file.enc", data, keyring)
    with io.BufferedReader(EncryptedReader.open(path, keyring), buffer_size=1000) as buffered:
        assert buffered.read(10) == data[:10]
        buffered.seek(CHUNK_SIZE - 3)
        assert buffered.read(6) == data[CHUNK_SIZE - 3 : CHUNK_SIZE + 3]
    copy = io.BytesIO()
    with EncryptedReader.open(path, keyring) as reader:
        shutil.copyfileobj(reader, copy)
    assert copy.getvalue() == data


def test_plaintext_size_needs_no_key_and_no_decryption(tmp_path: Path, keyring: Keyring) -> None:
    path = seal(tmp_path / "file.enc", b"x" * (2 * CHUNK_SIZE + 5), keyring)
    flip(path, HEADER_BYTES + 10)  # a damaged chunk: the size is still told, reading is refused
    assert plaintext_size(path) == 2 * CHUNK_SIZE + 5
    with pytest.raises(TamperedFile):
        unseal(path, keyring)


def test_a_small_chunk_size_is_kept_in_the_header(tmp_path: Path, keyring: Keyring) -> None:
    data = bytes(range(256)) * 3
    path = seal(tmp_path / "file.enc", data, keyring, chunk_size=100)
    assert path.stat().st_size == HEADER_BYTES + len(data) + 8 * TAG_BYTES
    assert plaintext_size(path) == len(data)
    assert unseal(path, keyring) == data


def test_no_plaintext_marker_in_the_ciphertext(tmp_path: Path, keyring: Keyring) -> None:
    marker = b"MARKER-7f3c9e1d-unique-plaintext"
    data = (b"id,name\n" + marker + b",x\n") * 5000
    path = seal(tmp_path / "file.enc", data, keyring)
    raw = path.read_bytes()
    assert marker not in raw
    assert marker[:12] not in raw
    assert is_encrypted(path)
    plain = tmp_path / "plain.csv"
    plain.write_bytes(data)
    assert not is_encrypted(plain)


def test_an_unclosed_or_failed_writer_leaves_a_file_every_reader_refuses(tmp_path: Path, keyring: Keyring) -> None:
    path = tmp_path / "cut.enc"
    with pytest.raises(RuntimeError), EncryptedWriter.create(path, keyring.current) as writer:
        writer.write(b"a" * (CHUNK_SIZE + 10))
        raise RuntimeError("the upload was aborted")
    with pytest.raises(TamperedFile):
        unseal(path, keyring)
    with pytest.raises(ValueError, match="closed"):
        writer.write(b"more")


def test_two_files_of_the_same_plaintext_differ(tmp_path: Path, keyring: Keyring) -> None:
    a = seal(tmp_path / "a.enc", b"same" * 1000, keyring).read_bytes()
    b = seal(tmp_path / "b.enc", b"same" * 1000, keyring).read_bytes()
    assert a[:8] == b[:8]  # the magic
    assert a[HEADER_BYTES:] != b[HEADER_BYTES:]


# Tampering


@pytest.fixture
def sample(tmp_path: Path, keyring: Keyring) -> tuple[Path, bytes]:
    data = random.Random(6).randbytes(3 * CHUNK_SIZE + 100)
    return seal(tmp_path / "sample.enc", data, keyring), data


def test_every_bit_of_the_header_is_authenticated(tmp_path: Path, keyring: Keyring) -> None:
    path = seal(tmp_path / "small.enc", b"hello, world", keyring)
    original = path.read_bytes()
    for offset in range(HEADER_BYTES):
        for bit in range(8):
            data = bytearray(original)
            data[offset] ^= 1 << bit
            path.write_bytes(bytes(data))
            with pytest.raises(TamperedFile):
                unseal(path, keyring)
    path.write_bytes(original)
    assert unseal(path, keyring) == b"hello, world"


@pytest.mark.parametrize("chunk", [0, 1, 2, 3])
@pytest.mark.parametrize("where", ["first byte", "middle", "tag"])
def test_a_flipped_bit_in_any_chunk(sample: tuple[Path, bytes], keyring: Keyring, chunk: int, where: str) -> None:
    path, _ = sample
    start = HEADER_BYTES + chunk * SEALED
    end = min(start + SEALED, path.stat().st_size)  # the last chunk is short
    offset = {"first byte": start, "middle": (start + end - TAG_BYTES) // 2, "tag": end - 1}[where]
    flip(path, offset, bit=3)
    with pytest.raises(TamperedFile, match=f"chunk {chunk} of 4"), EncryptedReader.open(path, keyring) as reader:
        reader.read()


def test_a_damaged_chunk_is_found_by_a_read_at_its_offset(sample: tuple[Path, bytes], keyring: Keyring) -> None:
    path, data = sample
    flip(path, HEADER_BYTES + SEALED + 5)
    with EncryptedReader.open(path, keyring) as reader:
        assert reader.read(100) == data[:100]  # chunk 0 is intact and served
        reader.seek(2 * CHUNK_SIZE)
        assert reader.read(10) == data[2 * CHUNK_SIZE : 2 * CHUNK_SIZE + 10]
        reader.seek(CHUNK_SIZE + 1)
        with pytest.raises(TamperedFile, match="chunk 1 of 4"):
            reader.read(1)


def test_truncation_by_one_chunk(sample: tuple[Path, bytes], keyring: Keyring) -> None:
    path, _ = sample
    with open(path, "r+b") as raw:
        raw.truncate(HEADER_BYTES + 3 * SEALED)
    assert plaintext_size(path) == 3 * CHUNK_SIZE  # the length alone cannot tell
    with pytest.raises(TamperedFile, match="chunk 2 of 3"):
        EncryptedReader.open(path, keyring)  # refused before a byte is served


@pytest.mark.parametrize("cut", [1, TAG_BYTES, SEALED // 2])
def test_truncation_inside_a_chunk(sample: tuple[Path, bytes], keyring: Keyring, cut: int) -> None:
    path, _ = sample
    with open(path, "r+b") as raw:
        raw.truncate(path.stat().st_size - cut)
    with pytest.raises(TamperedFile):
        unseal(path, keyring)


def test_a_file_cut_to_its_header_or_less(tmp_path: Path, keyring: Keyring) -> None:
    path = seal(tmp_path / "file.enc", b"data", keyring)
    for size in (HEADER_BYTES, HEADER_BYTES - 1, 8, 0):
        with open(path, "r+b") as raw:
            raw.truncate(size)
        with pytest.raises(TamperedFile):
            unseal(path, keyring)
        with pytest.raises(TamperedFile):
            plaintext_size(path)


def test_an_appended_chunk(sample: tuple[Path, bytes], keyring: Keyring) -> None:
    path, _ = sample
    raw = path.read_bytes()
    path.write_bytes(raw + raw[HEADER_BYTES : HEADER_BYTES + SEALED])  # a copy of chunk 0
    with pytest.raises(TamperedFile):
        EncryptedReader.open(path, keyring)
    path.write_bytes(raw + raw[-(100 + TAG_BYTES) :])  # a copy of the final chunk
    with pytest.raises(TamperedFile):
        EncryptedReader.open(path, keyring)


def test_reordered_chunks(sample: tuple[Path, bytes], keyring: Keyring) -> None:
    path, _ = sample
    raw = path.read_bytes()
    chunk = [raw[HEADER_BYTES + i * SEALED : HEADER_BYTES + (i + 1) * SEALED] for i in range(3)]
    path.write_bytes(raw[:HEADER_BYTES] + chunk[1] + chunk[0] + chunk[2] + raw[HEADER_BYTES + 3 * SEALED :])
    with pytest.raises(TamperedFile, match="chunk 0 of 4"), EncryptedReader.open(path, keyring) as reader:
        reader.read()


def test_chunks_swapped_between_two_files(tmp_path: Path, keyring: Keyring) -> None:
    data = b"z" * (2 * CHUNK_SIZE + 1)  # the same plaintext, at the same places
    a = seal(tmp_path / "a.enc", data, keyring)
    b = seal(tmp_path / "b.enc", data, keyring)
    raw_a, raw_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(raw_a[:HEADER_BYTES] + raw_b[HEADER_BYTES : HEADER_BYTES + SEALED] + raw_a[HEADER_BYTES + SEALED :])
    with pytest.raises(TamperedFile, match="chunk 0"):
        unseal(a, keyring)
    b.write_bytes(raw_a[:HEADER_BYTES] + raw_b[HEADER_BYTES:])  # b's chunks under a's header
    with pytest.raises(TamperedFile):
        unseal(b, keyring)


def test_tampered_file_is_under_the_error_root_and_names_the_file(tmp_path: Path, keyring: Keyring) -> None:
    path = seal(tmp_path / "named.enc", b"data", keyring)
    flip(path, HEADER_BYTES)
    with pytest.raises(TamperedFile) as caught:
        unseal(path, keyring)
    assert isinstance(caught.value, SftpInboxError)
    assert str(path) in str(caught.value)


# The master key


def test_the_master_key_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    first = load_keyring(keys_dir, create=True)
    key_file = keys_dir / MASTER_KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(keys_dir.stat().st_mode) == 0o700
    again = load_keyring(keys_dir, create=True)
    assert again.current.secret == first.current.secret
    assert again.retiring is None
    assert first.current.secret.hex() not in repr(first)
    assert [p.name for p in keys_dir.iterdir()] == [MASTER_KEY_FILE]


def test_the_master_key_is_never_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    keyring = load_keyring(tmp_path / "keys", create=True)
    seal(tmp_path / "f.enc", b"data", keyring)
    rotate_master_key(tmp_path / "keys", [tmp_path])
    text = " ".join(str(getattr(record, "fields", "")) + record.getMessage() for record in caplog.records)
    assert "masterkey.created" in text
    assert keyring.current.secret.hex() not in text
    secret_b64 = (tmp_path / "keys" / MASTER_KEY_FILE).read_text().split()[1]
    assert secret_b64 not in text


def test_a_missing_master_key_names_its_file(tmp_path: Path) -> None:
    with pytest.raises(MasterKeyError, match=str(tmp_path / "keys" / MASTER_KEY_FILE)) as caught:
        load_keyring(tmp_path / "keys")
    assert isinstance(caught.value, UsageError)
    assert not (tmp_path / "keys").exists()  # nothing made without create=True


def test_an_open_or_damaged_key_file_is_refused(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    load_keyring(keys_dir, create=True)
    key_file = keys_dir / MASTER_KEY_FILE
    key_file.chmod(0o640)
    with pytest.raises(MasterKeyError, match="chmod 600"):
        load_keyring(keys_dir, create=True)
    key_file.chmod(0o600)
    tag, encoded = key_file.read_text().split()
    for text in (f"{tag} {encoded[:-4]}\n", f"other {encoded}\n", f"{tag} !!!{encoded[3:]}\n", ""):
        key_file.write_text(text)
        with pytest.raises(MasterKeyError, match=str(key_file)):
            load_keyring(keys_dir, create=True)


def test_a_wrong_master_key_names_the_key_file_not_tampering(tmp_path: Path, keyring: Keyring) -> None:
    path = seal(tmp_path / "file.enc", b"secret rows", keyring)
    other = tmp_path / "other"
    other.mkdir(mode=0o700)
    wrong = Keyring(create_key_file(other / MASTER_KEY_FILE))
    with pytest.raises(MasterKeyError) as caught:
        unseal(path, wrong)
    message = str(caught.value)
    assert str(other / MASTER_KEY_FILE) in message
    assert keyring.current.key_id.hex() in message
    assert not isinstance(caught.value, TamperedFile)


def test_a_keys_dir_inside_the_data_dir_is_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    for keys_dir in (data_dir / "keys", data_dir):
        with pytest.raises(MasterKeyError, match="inside the data dir"):
            load_keyring(keys_dir, create=True, data_dir=data_dir)
        assert not (keys_dir / MASTER_KEY_FILE).exists()
    assert load_keyring(tmp_path / "keys", create=True, data_dir=data_dir).current.path.exists()


# Rotation


def make_files(root: Path, keyring: Keyring, count: int) -> dict[Path, bytes]:
    files = {}
    for number in range(count):
        folder = root / "tenants" / f"t{number % 3}" / "in"
        folder.mkdir(parents=True, exist_ok=True)
        data = random.Random(number).randbytes(number * 3000)
        files[seal(folder / f"f{number}.csv", data, keyring, chunk_size=4096)] = data
    return files


def test_rotation_rewraps_every_file_without_touching_its_data(tmp_path: Path, keyring: Keyring) -> None:
    keys_dir = tmp_path / "keys"
    data_dir = tmp_path / "var"
    files = make_files(data_dir, keyring, 7)
    (data_dir / "state.db").write_bytes(b"SQLite format 3\0 not ours")
    before = {path: path.read_bytes() for path in files}
    report = rotate_master_key(keys_dir, [data_dir])
    assert (report.rewrapped, report.already_current, report.resumed) == (7, 0, False)
    assert report.old_key_id == keyring.current.key_id.hex()
    assert not rotation_in_progress(keys_dir)
    new = load_keyring(keys_dir)
    assert new.retiring is None
    assert new.current.secret != keyring.current.secret
    assert sorted(p.name for p in keys_dir.iterdir()) == [MASTER_KEY_FILE, ROTATION_LOCK_FILE]
    for path, data in files.items():
        after = path.read_bytes()
        assert after[:SLOT_OFFSET] == before[path][:SLOT_OFFSET]
        assert after[HEADER_BYTES:] == before[path][HEADER_BYTES:]  # not re-encrypted
        assert after[SLOT_OFFSET:HEADER_BYTES] != before[path][SLOT_OFFSET:HEADER_BYTES]
        assert unseal(path, new) == data  # the old key is not needed
        with pytest.raises(MasterKeyError):
            unseal(path, keyring)  # nor does it open them any more
    assert (data_dir / "state.db").read_bytes() == b"SQLite format 3\0 not ours"


def test_an_interrupted_rotation_keeps_every_file_readable_and_resumes(tmp_path: Path, keyring: Keyring) -> None:
    keys_dir = tmp_path / "keys"
    files = make_files(tmp_path / "var", keyring, 9)
    handled: list[Path] = []

    def crash_after_four(path: Path) -> None:
        handled.append(path)
        if len(handled) == 4:
            raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        rotate_master_key(keys_dir, [tmp_path / "var"], after_file=crash_after_four)
    assert rotation_in_progress(keys_dir)
    both = load_keyring(keys_dir)
    assert both.retiring is not None
    assert both.retiring.secret == keyring.current.secret
    for path, data in files.items():
        assert unseal(path, both) == data  # four under the new key, five under the old
    # A file written meanwhile (under the new key) is readable and left as it is.
    fresh = seal(tmp_path / "var" / "fresh.csv", b"written mid-rotation", both)

    report = rotate_master_key(keys_dir, [tmp_path / "var"])
    assert (report.resumed, report.rewrapped, report.already_current) == (True, 5, 5)
    assert report.new_key_id == both.current.key_id.hex()
    assert not rotation_in_progress(keys_dir)
    final = load_keyring(keys_dir)
    assert final.current.secret == both.current.secret
    for path, data in files.items():
        assert unseal(path, final) == data
    assert unseal(fresh, final) == b"written mid-rotation"


def test_a_rotation_killed_before_the_new_key_was_in_place_resumes(tmp_path: Path, keyring: Keyring) -> None:
    keys_dir = tmp_path / "keys"
    files = make_files(tmp_path / "var", keyring, 3)
    # The state step 1 leaves: the retiring copy made, master.key not yet replaced.
    shutil.copy2(keys_dir / MASTER_KEY_FILE, keys_dir / RETIRING_KEY_FILE)
    assert read_key_file(keys_dir / RETIRING_KEY_FILE).secret == keyring.current.secret
    report = rotate_master_key(keys_dir, [tmp_path / "var"])
    assert report.resumed and report.rewrapped == 3
    final = load_keyring(keys_dir)
    assert final.current.secret != keyring.current.secret
    for path, data in files.items():
        assert unseal(path, final) == data


def test_a_file_written_with_the_old_key_during_the_pass_is_rewrapped(tmp_path: Path, keyring: Keyring) -> None:
    keys_dir = tmp_path / "keys"
    make_files(tmp_path / "var", keyring, 2)
    late = tmp_path / "var" / "zz-late.csv"

    def old_writer_finishes(path: Path) -> None:
        if not late.exists():
            seal(late, b"sealed by a process still holding the old key", keyring)

    report = rotate_master_key(keys_dir, [tmp_path / "var"], after_file=old_writer_finishes)
    assert report.rewrapped == 3
    assert unseal(late, load_keyring(keys_dir)) == b"sealed by a process still holding the old key"


def test_one_rotation_at_a_time(tmp_path: Path, keyring: Keyring) -> None:
    keys_dir = tmp_path / "keys"
    files = make_files(tmp_path / "var", keyring, 2)
    before = {path: path.read_bytes() for path in files}
    fd = os.open(keys_dir / ROTATION_LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(RotationBusy) as caught:
            rotate_master_key(keys_dir, [tmp_path / "var"])
        assert isinstance(caught.value, Conflict)
    finally:
        os.close(fd)
    assert not rotation_in_progress(keys_dir)
    assert load_keyring(keys_dir).current.secret == keyring.current.secret
    assert {path: path.read_bytes() for path in files} == before


def test_a_header_read_while_a_rotation_rewrites_it_is_read_again(
    tmp_path: Path, keyring: Keyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = seal(tmp_path / "file.enc", b"served during a rotation", keyring)
    old_header = path.read_bytes()[:HEADER_BYTES]
    new_key = create_key_file(tmp_path / "new" / MASTER_KEY_FILE)
    both = Keyring(new_key, keyring.current)
    assert rewrap(path, both, new_key)
    torn = old_header[:60] + path.read_bytes()[60:HEADER_BYTES]  # the slot write seen half done
    reads: list[int] = []
    real_pread = EncryptedReader._pread

    def pread(self: EncryptedReader, offset: int, count: int) -> bytes:
        reads.append(offset)
        return torn if len(reads) == 1 else real_pread(self, offset, count)

    monkeypatch.setattr(EncryptedReader, "_pread", pread)
    assert unseal(path, both) == b"served during a rotation"
    assert reads[:2] == [0, 0]


def test_rotation_skips_plaintext_and_lists_tampered_and_foreign_files(tmp_path: Path, keyring: Keyring) -> None:
    keys_dir = tmp_path / "keys"
    root = tmp_path / "var"
    root.mkdir()
    (root / "plain.csv").write_bytes(b"a,b\n1,2\n")
    good = seal(root / "good.csv", b"good", keyring)
    bad = seal(root / "bad.csv", b"bad", keyring)
    flip(bad, SLOT_OFFSET + 30)
    other = tmp_path / "other"
    foreign = seal(root / "foreign.csv", b"foreign", Keyring(create_key_file(other / MASTER_KEY_FILE)))
    (root / "link.csv").symlink_to(good)
    report = rotate_master_key(keys_dir, [root])
    assert report.rewrapped == 1
    assert report.tampered == [bad]
    assert report.foreign == [foreign]
    assert (root / "plain.csv").read_bytes() == b"a,b\n1,2\n"
    assert unseal(good, load_keyring(keys_dir)) == b"good"


def test_a_rotation_without_a_master_key_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(MasterKeyError, match=str(tmp_path / "keys" / MASTER_KEY_FILE)):
        rotate_master_key(tmp_path / "keys", [tmp_path])


# Properties


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    size=st.integers(0, 3000),
    chunk_size=st.integers(1, 700),
    pieces=st.lists(st.integers(1, 900), min_size=1, max_size=8),
    reads=st.lists(st.tuples(st.integers(0, 3200), st.integers(-1, 1500)), max_size=12),
)
def test_any_size_any_writes_any_reads(
    tmp_path: Path, keyring: Keyring, size: int, chunk_size: int, pieces: list[int], reads: list[tuple[int, int]]
) -> None:
    data = os.urandom(size)
    path = tmp_path / "property.enc"
    path.unlink(missing_ok=True)
    with EncryptedWriter.create(path, keyring.current, chunk_size=chunk_size) as writer:
        offset = 0
        for piece in pieces * (size // sum(pieces) + 1):
            if offset >= size:
                break
            writer.write(data[offset : offset + piece])
            offset += piece
    assert plaintext_size(path) == size
    with EncryptedReader.open(path, keyring) as reader:
        assert reader.plaintext_size() == size
        for start, count in reads:
            reader.seek(start)
            expected = data[start:] if count < 0 else data[start : start + count]
            assert reader.read(count) == expected
        reader.seek(0)
        assert reader.read() == data
