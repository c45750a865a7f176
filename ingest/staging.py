"""The watcher: turn each completed upload into a staged, immutable snapshot.

A snapshot lies at ``data_dir/staging/<tenant>/<upload id>/<name>``, out of the customer's reach,
so what the processor later reads is exactly what was checked, whatever the customer does to the
file in ``in/`` meanwhile. For an SFTP upload it is the front door's kept name of the uploaded
bytes, moved here: they were hashed as they arrived and the front door never writes into a
published file, so a rename replaces a copy and a second hash of the whole file. Otherwise (a file
found by the scan, or a kept name on another file system) the file is copied, with mode 0600, and
its sha256 computed from the very bytes copied. A new
upload of the same path before the next run supersedes the earlier one: each file is processed
once, in its latest version.

The folder picks the feed: ``in/x.csv`` goes to the tenant's default feed, ``in/<feed>/x.csv``
(and anything below it) to that feed. An unknown feed folder is staged all the same, with the
reason, so the next run rejects it with a report and a mail like any other refused file.

Files that arrive another way than through the SFTP server (an operator's copy, a mount) are found
by a periodic :class:`Scanner` once their size and mtime have stopped changing.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import shutil
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path, PurePosixPath

from core.clock import iso, now_iso, parse_iso, utcnow
from core.config import Settings
from core.crypto import AtRest, TamperedFile
from core.logs import get_logger
from core.tenants import IN_DIR, TenantStore
from core.uploads import Upload, UploadState, UploadStore
from core.workers import caught_up
from ingest.store import FeedStore, StagedStore, StagedUpload

# Why a waiting upload was withdrawn (its state becomes ``superseded``).
WITHDRAWN = "removed or renamed in in/ before a run read it"

log = get_logger("ingest.staging")

STAGING_DIR = "staging"
FOLDER_MODE = 0o700
SNAPSHOT_MODE = 0o600
COPY_CHUNK_BYTES = 1024 * 1024
SCAN_SOURCE = "scan"
NANOSECONDS = 1e9


class Stager:
    def __init__(
        self, settings: Settings, uploads: UploadStore, feeds: FeedStore, staged: StagedStore, at_rest: AtRest,
    ) -> None:
        self.root = settings.data_dir / STAGING_DIR
        self.at_rest = at_rest
        self.uploads = uploads
        self.feeds = feeds
        self.staged = staged
        # One thread of its own: a burst of uploads queues here, not in the loop's default
        # executor, where the front door and the pipeline wait for short jobs.
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-stager")

    async def stage_in_worker(
        self, upload: Upload, local_path: Path, adopted: Path | None = None
    ) -> StagedUpload | None:
        """:meth:`stage` on the stager's own thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._worker, self.stage, upload, local_path, adopted)

    def queue(self, upload: Upload, local_path: Path, adopted: Path | None = None) -> None:
        """:meth:`stage` on the stager's own thread, in the order of the calls, from any thread;
        a failure is logged, as no one waits for the result."""
        self._worker.submit(self._stage_logged, upload, local_path, adopted)

    async def settled(self) -> None:
        """Wait until everything queued so far is staged (the thread takes jobs in order)."""
        await caught_up(self._worker)

    def _stage_logged(self, upload: Upload, local_path: Path, adopted: Path | None) -> None:
        try:
            self.stage(upload, local_path, adopted)
        except Exception:
            log.error("staging.failed", exc_info=True, tenant=upload.tenant, upload=upload.id,
                      path=upload.path)

    def adopt(self, upload: Upload, kept: Path) -> Path | None:
        """Move the front door's kept name of ``upload`` (see the module docstring) to where its
        snapshot goes; None where it cannot be moved, and :meth:`stage` then copies the upload.

        A few system calls, no reading: fit for the event loop.
        """
        relative = _inbox_relative(upload.path)
        if relative is None:
            return None
        folder = self.root / upload.tenant / str(upload.id)
        try:
            _make_folders(folder)
            os.rename(kept, folder / relative.name)
        except OSError:
            return None
        return folder / relative.name

    def stage(self, upload: Upload, local_path: Path, adopted: Path | None = None) -> StagedUpload | None:
        """Snapshot ``upload`` (now at ``local_path``), unless :meth:`adopt` did; None if it cannot
        be staged.

        Blocking (it may copy the file): call it from a worker thread on the event loop.
        """
        relative = _inbox_relative(upload.path)
        if relative is None:
            self.uploads.set_state(upload.id, UploadState.REJECTED, f"{upload.path}: not in the in/ folder")
            return None
        feed_name, feed_error = self._feed_of(upload.tenant, relative)
        folder = self.root / upload.tenant / str(upload.id)
        try:
            snapshot, digest = (adopted, upload.sha256) if adopted else self._snapshot(local_path, folder)
        except FileNotFoundError:
            shutil.rmtree(folder, ignore_errors=True)
            self.uploads.set_state(
                upload.id, UploadState.REJECTED, "the file was removed before it could be staged"
            )
            return None
        except TamperedFile:
            shutil.rmtree(folder, ignore_errors=True)
            self.uploads.set_state(
                upload.id, UploadState.REJECTED, "the stored file is damaged; please upload it again"
            )
            log.warning("staging.damaged", tenant=upload.tenant, upload=upload.id, path=upload.path)
            return None
        if digest != upload.sha256:
            shutil.rmtree(folder, ignore_errors=True)
            self.uploads.set_state(
                upload.id, UploadState.SUPERSEDED, "the file changed again before it could be staged"
            )
            log.info("staging.changed", tenant=upload.tenant, upload=upload.id, path=upload.path)
            return None
        candidate = StagedUpload(
            upload_id=upload.id, tenant=upload.tenant, path=upload.path, feed=feed_name,
            snapshot=str(snapshot), sha256=digest, staged_at=now_iso(), state=UploadState.STAGED.value,
            error=feed_error, run_id=None, rows_total=0, report=None, finished_at=None,
        )
        with self.staged.db.transaction():
            superseded = self.staged.add(candidate)
            staged = self.staged.get(upload.id)
            assert staged is not None
        for older in superseded:
            _remove_snapshot(Path(older.snapshot))
        log.info("staging.staged", tenant=upload.tenant, upload=upload.id, path=upload.path,
                 feed=feed_name, superseded=[older.upload_id for older in superseded])
        return staged

    def _snapshot(self, source: Path, folder: Path) -> tuple[Path, str]:
        """Seal a copy of ``source``'s plaintext in ``folder`` (mode 0600), hashing the bytes
        copied (a sealed upload is decrypted and sealed again, under a data key of its own).

        Not fsynced: the upload it copies was not either (the front door leaves that to the page
        cache, as OpenSSH does), and a sync per file stalls every file creation on the same file
        system, the front door's included, behind a journal commit. What a power cut can cost is
        the same as for the upload itself.
        """
        _make_folders(folder)
        digest = hashlib.sha256()
        temporary = folder / f".{source.name}.{secrets.token_hex(4)}.tmp"
        with self.at_rest.open(source) as reader:
            try:
                with self.at_rest.create(temporary, mode=SNAPSHOT_MODE) as writer:
                    while chunk := reader.read(COPY_CHUNK_BYTES):
                        digest.update(chunk)
                        writer.write(chunk)
            except BaseException:
                temporary.unlink(missing_ok=True)
                raise
        target = folder / source.name
        os.replace(temporary, target)
        return target, digest.hexdigest()

    def withdraw_if_gone(self, staged: StagedUpload, tenant_root: Path) -> bool:
        """Withdraw a waiting upload whose file the customer removed from ``in/`` before a run read
        it (or renamed: the run's scan stages it under its new name); True if it was withdrawn.

        Only a file no longer at its path counts: a changed file there is a newer upload, which
        supersedes this one when it is staged.
        """
        if (tenant_root / staged.path).exists():
            return False
        if not self.staged.withdraw(staged.upload_id, WITHDRAWN):
            return False
        _remove_snapshot(Path(staged.snapshot))
        log.info("staging.withdrawn", tenant=staged.tenant, upload=staged.upload_id, path=staged.path)
        return True

    def _feed_of(self, tenant: str, relative: PurePosixPath) -> tuple[str, str]:
        """The feed a file goes to, and why it cannot (empty if it can)."""
        if len(relative.parts) == 1:
            return self.feeds.default_name(tenant), ""
        name = relative.parts[0]
        names = self.feeds.names(tenant)
        if name not in names:
            known = ", ".join(names)
            return name, (f"no feed named {name!r}: put files directly in in/ or in a feed folder"
                          f" (in/<feed>/, feeds: {known})")
        return name, ""


#: A file's size and mtime (ns) as last handled: a plain tuple of ints, which the garbage
#: collector stops tracking, so a scanner remembering 100,000 files adds nothing to its passes.
_Seen = tuple[int, int]


class Scanner:
    """Stages files in tenants' ``in/`` that no upload event announced, once they are stable.

    A file is stable when it has not been written for ``schedule.stable_seconds``: every write
    moves the mtime, so an mtime that old means size and content have held still that long. A
    file that is still the content of the last upload of its path is known and not staged again
    (unless that upload never got staged, after a crash between recording and staging: then it is
    staged now). Size and an mtime no newer than the upload record say "unchanged" without reading
    the file; anything else is hashed and compared. Hidden names and the temporary names of uploads
    in progress are skipped, and so are empty files (no rows, no upload). An upload waiting for a
    run whose file is no longer in ``in/`` (removed or renamed by the customer) is withdrawn.
    """

    def __init__(self, settings: Settings, tenants: TenantStore, uploads: UploadStore, stager: Stager) -> None:
        self.stable_seconds = settings.schedule.stable_seconds
        self.temporary_suffixes = tuple(settings.server.temporary_suffixes)
        self.max_folder_depth = settings.server.max_folder_depth
        self.tenants = tenants
        self.uploads = uploads
        self.stager = stager
        # Per tenant, per path in in/: what the file was when last handled.
        self._handled: dict[str, dict[str, _Seen]] = {}

    def scan(self) -> list[StagedUpload]:
        """One pass over every tenant's ``in/``; blocking, run it in a worker thread.

        A file or folder the OS refuses (a path past its length limit, a name it cannot stat)
        is logged and skipped: one tenant's odd folder never stops the scan of the others.
        """
        staged: list[StagedUpload] = []
        tenants = self.tenants.all()
        # Uploads waiting for a run, read in one query for the pass: one whose file is gone is withdrawn.
        waiting: dict[str, list[StagedUpload]] = {}
        for upload in self.stager.staged.waiting():
            waiting.setdefault(upload.tenant, []).append(upload)
        # Uploads recorded but never staged (their front door died in between): their files are
        # looked at again though this scanner saw them unchanged, as it may have before the
        # record (a node records after the client's close is answered).
        unstaged = self.uploads.received_before(iso(utcnow() - timedelta(seconds=self.stable_seconds)))
        for tenant in tenants:
            try:
                self._scan_tenant(tenant.name, staged, waiting.get(tenant.name, []),
                                  unstaged.get(tenant.name, set()))
            except Exception:
                log.error("staging.scan_failed", exc_info=True, tenant=tenant.name)
        for gone in self._handled.keys() - {tenant.name for tenant in tenants}:
            del self._handled[gone]
        return staged

    def _scan_tenant(self, tenant: str, staged: list[StagedUpload], waiting: list[StagedUpload],
                     unstaged: set[str]) -> None:
        """One tenant's ``in/``; what it sees of the tenant's files lives and dies here, so freeing
        it never holds the GIL for long (a whole pass's 100,000 paths, freed at its end, held it
        about 50 ms)."""
        inbox = self.tenants.folders(tenant).inbox
        handled = self._handled.setdefault(tenant, {})
        present: set[str] = set()
        for relative, info in self._files(inbox):
            path = f"{IN_DIR}/{relative}"
            present.add(path)
            seen = self._stable(info)
            if seen is None or (handled.get(path) == seen and path not in unstaged):
                continue
            try:
                # One indexed lookup per file not seen unchanged before, never the tenant's history.
                result = self._stage_if_new(tenant, path, inbox / relative, seen,
                                            self.uploads.last_of_path(tenant, path))
            except OSError as exc:
                log.warning("staging.unreadable", tenant=tenant, path=path, error=exc.strerror or str(exc))
                continue
            except TamperedFile as exc:
                # Told once: it is not read again until it changes (or the daemon restarts).
                log.warning("staging.damaged", tenant=tenant, path=path, error=str(exc))
                handled[path] = seen
                continue
            handled[path] = seen
            if result is not None:
                staged.append(result)
        for path in handled.keys() - present:
            del handled[path]
        root = self.tenants.folders(tenant).root
        for upload in waiting:
            if upload.path not in present:
                self.stager.withdraw_if_gone(upload, root)

    def _stable(self, info: os.stat_result) -> _Seen | None:
        """The file's size and mtime if it has not been written for ``stable_seconds``."""
        if time.time() - info.st_mtime_ns / NANOSECONDS < self.stable_seconds:
            return None
        return info.st_size, info.st_mtime_ns

    def _stage_if_new(
        self, tenant: str, relative: str, path: Path, seen: _Seen, last: Upload | None
    ) -> StagedUpload | None:
        try:
            # Sizes and digests are the plaintext's, as the front door recorded them (a file
            # sealed at rest is larger on disk); an empty file holds no rows, sealed or not.
            plain_size = AtRest.size(path)
            if plain_size == 0:
                return None
            if last is not None and _unchanged_since(last, plain_size, seen):
                return self.stager.stage(last, path) if last.state == UploadState.RECEIVED else None
            size, digest = self.stager.at_rest.digest(path)
        except FileNotFoundError:
            return None
        if last is not None and last.sha256 == digest:
            return self.stager.stage(last, path) if last.state == UploadState.RECEIVED else None
        upload = self.uploads.record(tenant, relative, size, digest, source=SCAN_SOURCE)
        log.info("staging.found", tenant=tenant, path=relative, upload=upload.id)
        return self.stager.stage(upload, path)

    def _files(self, inbox: Path) -> list[tuple[str, os.stat_result]]:
        """Regular non-empty files under ``inbox`` (each path relative to it, POSIX style) with
        their ``lstat``, no deeper than the front door lets folders go.

        In the order of ``os.walk`` with sorted names (a folder's files, then its folders, each in
        turn), on plain strings: a pass re-walks every ``in/``, so its cost per file is kept to the
        ``lstat`` and a name or two. A link to a folder is not followed; a link to a file is no file.
        """
        found: list[tuple[str, os.stat_result]] = []
        root = os.fspath(inbox)
        stack = [""]
        while stack:
            relative = stack.pop()
            folder = os.path.join(root, relative) if relative else root
            try:
                with os.scandir(folder) as listing:
                    entries = sorted(listing, key=lambda entry: entry.name)
            except OSError as exc:
                _skip_folder(exc)
                continue
            depth = relative.count("/") + 1 if relative else 0
            folders = [entry for entry in entries if _is_folder(entry)]
            if depth >= self.max_folder_depth:
                if folders:
                    log.warning("staging.too_deep", folder=folder, depth=depth + 1)
                folders = []
            prefix = f"{relative}/" if relative else ""
            stack += reversed([f"{prefix}{entry.name}" for entry in folders
                               if not entry.name.startswith(".") and not entry.is_symlink()])
            for entry in entries:
                name = entry.name
                if name.startswith(".") or name.endswith(self.temporary_suffixes) or _is_folder(entry):
                    continue
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError as exc:
                    log.warning("staging.unreadable", path=entry.path, error=exc.strerror or str(exc))
                    continue
                # An empty file holds no rows and is no upload: the front door publishes an empty
                # upload (so the client sees what it wrote) without recording it; nor does the scan.
                if stat.S_ISREG(info.st_mode) and info.st_size > 0:
                    found.append((prefix + name, info))
        return found


def _is_folder(entry: os.DirEntry[str]) -> bool:
    """As ``os.walk`` tells folders: links to folders count (and are then not followed)."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def _skip_folder(error: OSError) -> None:
    """os.walk's error handler: a folder it cannot list is logged and left out."""
    log.warning("staging.unreadable", path=str(error.filename), error=error.strerror or str(error))


def _inbox_relative(upload_path: str) -> PurePosixPath | None:
    """``in/a/b.csv`` → ``a/b.csv``; None for a path outside ``in/``."""
    parts = PurePosixPath(upload_path.lstrip("/")).parts
    if len(parts) < 2 or parts[0] != IN_DIR or ".." in parts:
        return None
    return PurePosixPath(*parts[1:])


def _unchanged_since(upload: Upload, size: int, seen: _Seen) -> bool:
    """Same (plaintext) size, and not written after the upload was recorded."""
    recorded = parse_iso(upload.received_at).timestamp()
    return upload.size == size and seen[1] / NANOSECONDS <= recorded


def _remove_snapshot(snapshot: Path) -> None:
    """Delete a snapshot and its folder; the folder holds nothing else unless a copy broke off."""
    try:
        snapshot.unlink()
        snapshot.parent.rmdir()
    except OSError:
        shutil.rmtree(snapshot.parent, ignore_errors=True)


def _make_folders(folder: Path) -> None:
    """``folder`` and its missing parents, each private (mkdir's mode applies to the last only)."""
    try:
        folder.mkdir(mode=FOLDER_MODE)
        return
    except FileExistsError:
        return
    except FileNotFoundError:
        pass
    missing = [folder, *folder.parents]
    for part in reversed(missing):
        if not part.exists():
            part.mkdir(mode=FOLDER_MODE, exist_ok=True)
