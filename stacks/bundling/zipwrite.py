"""Zip entries deflated once and reused: a stored run of entries plus an index, merged with new entries.

A bundle's zip is sorted by name, so dependency entries and the source's entries interleave. Each entry is
kept as its local header, name and deflated data (a blob: a local header carries no offset, so a blob is the
same wherever it lands in a zip); a merge copies runs of stored blobs as they are and writes the central
directory from the index. The bytes equal what `zipfile` writes for the same files (sorted, dated
1980-01-01, mode 0644 or 0755, deflate level 6), which the tests compare.
"""

from __future__ import annotations

import contextlib
import io
import json
import mmap
import os
import shutil
import stat
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

# Local header, central directory entry and end record of a zip (APPNOTE 4.3.7, 4.3.12, 4.3.16).
_LOCAL = struct.Struct("<IHHHHHIIIHH")
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_END = struct.Struct("<IHHHHIIH")
_DOS_DATE = (0 << 9) | (1 << 5) | 1  # 1980-01-01, 00:00:00: no build time reaches the zip
_ZIP_VERSION = 20  # deflate, as zipfile writes it
_MADE_ON_UNIX = 3 << 8
_ZIP_MAX = 0xFFFF_FFFF
MAX_ENTRIES = 0xFFFF  # without zip64


class ZipLimitError(ValueError):
    """The entries do not fit a zip without zip64."""


@dataclass(frozen=True)
class Entry:
    """One zip entry: `blob` is local header + name + deflated data, at `offset` in its store."""

    name: str
    crc: int
    size: int
    packed_size: int
    executable: bool
    offset: int  # where the blob starts in its store (the layer's blob file, or a new entry's own bytes)
    length: int


def _flags(name: str) -> int:
    return 0 if name.isascii() else 0x800  # UTF-8 name flag, as zipfile sets it


def deflate(name: str, data: bytes, executable: bool) -> tuple[bytes, int, int, int]:
    """(blob, crc, size, packed size) of one entry."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)  # raw deflate, level 6: zipfile's own settings
    packed = compressor.compress(data) + compressor.flush()
    encoded = name.encode("utf-8")
    crc = zlib.crc32(data)
    if len(data) > _ZIP_MAX or len(packed) > _ZIP_MAX:
        raise ZipLimitError(f"{name} does not fit a zip without zip64 (over 4 GiB)")
    header = _LOCAL.pack(
        0x04034B50, _ZIP_VERSION, _flags(name), zipfile.ZIP_DEFLATED, 0, _DOS_DATE, crc, len(packed),
        len(data), len(encoded), 0,
    )  # fmt: skip
    return header + encoded + packed, crc, len(data), len(packed)


def is_executable(path: Path) -> bool:
    return bool(path.stat().st_mode & stat.S_IXUSR)


def _deflate_file(item: tuple[str, Path]) -> tuple[bytes, int, int, int, bool]:
    name, path = item
    executable = is_executable(path)
    return (*deflate(name, path.read_bytes(), executable), executable)


class NewEntries:
    """Entries deflated now (source, bytecode, build_info), held in memory until the merge."""

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.blobs: list[bytes] = []

    def add_files(self, files: Sequence[tuple[str, Path]]) -> None:
        """Deflate files on every core (zlib releases the GIL)."""
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            for (name, _path), (blob, crc, size, packed, executable) in zip(
                files, pool.map(_deflate_file, files), strict=True
            ):
                self.add_blob(name, blob, crc, size, packed, executable)

    def add_blob(self, name: str, blob: bytes, crc: int, size: int, packed: int, executable: bool) -> None:
        self.entries.append(Entry(name, crc, size, packed, executable, len(self.blobs), len(blob)))
        self.blobs.append(blob)


def store_entries(files: Sequence[tuple[str, Path]], blob_path: Path, index_path: Path) -> list[Entry]:
    """Deflate `files` (sorted) into one blob file and write its index; returns the index."""
    entries = []
    offset = 0
    with blob_path.open("wb") as out, ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for (name, _path), (blob, crc, size, packed, executable) in zip(
            files, pool.map(_deflate_file, files), strict=True
        ):
            out.write(blob)
            entries.append(Entry(name, crc, size, packed, executable, offset, len(blob)))
            offset += len(blob)
    index_path.write_text(json.dumps([list(e.__dict__.values()) for e in entries], separators=(",", ":")))
    return entries


def extract(archive: Path, dest: Path) -> Path:
    """Unzip `archive` into `dest` (built beside it and renamed in one step; kept when `dest` exists), with
    the file modes the zip records: what Lambda's /var/task holds."""
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name[:12]}-", dir=dest.parent))
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                zf.extract(info, work)
                mode = (info.external_attr >> 16) & 0o777
                if mode and not info.is_dir():
                    os.chmod(work / info.filename, mode | 0o400)
        with contextlib.suppress(OSError):  # another process unpacked it first: the same files
            os.rename(work, dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest


def load_index(index_path: Path) -> list[Entry]:
    return [Entry(*row) for row in json.loads(index_path.read_text())]


def write_zip(directory: Path, zip_path: Path) -> int:
    """A byte-reproducible zip of every file under `directory`, as the bundle's (sorted, fixed dates,
    normalised modes, deflated on every core); returns its size. For outputs with no stored layer."""
    new = NewEntries()
    new.add_files(
        sorted((p.relative_to(directory).as_posix(), p) for p in directory.rglob("*") if p.is_file())
    )
    return write_merged(zip_path, (), new, replaced=())


@dataclass(frozen=True)
class Store:
    """Entries deflated once (store_entries): their index and the blob file holding them."""

    entries: Sequence[Entry]
    blob_path: Path


def write_merged(
    zip_path: Path,
    stores: Sequence[Store],
    new: NewEntries,
    *,
    replaced: Iterable[str],
) -> int:
    """Write a zip of the stores' entries (minus `replaced` names) and the new ones, in name order; a name
    in a later store replaces it in an earlier one, and a new entry replaces both.

    Runs of consecutive entries of one store are copied in one call, never recompressed. Returns the zip's
    size.
    """
    taken = set(replaced) | {e.name for e in new.entries}
    merged: list[tuple[str, int, Entry]] = [(e.name, -1, e) for e in new.entries]
    for index in reversed(range(len(stores))):
        kept = [e for e in stores[index].entries if e.name not in taken]
        taken.update(e.name for e in kept)
        merged += [(e.name, index, e) for e in kept]
    merged.sort(key=lambda item: item[0])
    if len(merged) >= MAX_ENTRIES:
        raise ZipLimitError(f"{len(merged)} files: more than a zip without zip64 can hold")
    central = bytearray()
    position = 0
    with zip_path.open("wb", buffering=0) as out, contextlib.ExitStack() as opened:
        mapped = [opened.enter_context(_mapped(store.blob_path)) for store in stores]
        run_store, run_start, run_end = -1, -1, -1
        kernel_copy = hasattr(os, "copy_file_range")

        def flush() -> None:
            nonlocal kernel_copy
            if run_store < 0:
                return
            store = mapped[run_store]
            done = run_start
            # In-kernel copy of a stored run (no trip through this process); plain writes where unsupported.
            while kernel_copy and store.fd >= 0 and done < run_end:
                try:
                    copied = os.copy_file_range(store.fd, out.fileno(), run_end - done, done)
                except OSError:
                    copied = 0
                if copied <= 0:
                    kernel_copy = False
                    break
                done += copied
            if done < run_end:
                _write_all(out, store.data[done:run_end])

        for name, source, entry in merged:
            if position > _ZIP_MAX:
                raise ZipLimitError(f"{name}: the zip is over 4 GiB, more than a zip without zip64 can hold")
            encoded = name.encode("utf-8")
            mode = (0o100755 if entry.executable else 0o100644) << 16
            central += _CENTRAL.pack(
                0x02014B50, _MADE_ON_UNIX | _ZIP_VERSION, _ZIP_VERSION, _flags(name), zipfile.ZIP_DEFLATED, 0,
                _DOS_DATE, entry.crc, entry.packed_size, entry.size, len(encoded), 0, 0, 0, 0, mode, position,
            ) + encoded  # fmt: skip
            if source >= 0 and source == run_store and entry.offset == run_end:
                run_end += entry.length
            else:
                flush()
                if source >= 0:
                    run_store, run_start, run_end = source, entry.offset, entry.offset + entry.length
                else:
                    run_store = run_start = run_end = -1
                    _write_all(out, new.blobs[entry.offset])
            position += entry.length
        flush()
        if position > _ZIP_MAX:
            raise ZipLimitError("the zip is over 4 GiB, more than a zip without zip64 can hold")
        _write_all(out, bytes(central))
        _write_all(out, _END.pack(0x06054B50, 0, 0, len(merged), len(merged), len(central), position, 0))
        return position + len(central) + _END.size


def _write_all(out: io.FileIO, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = out.write(view)
        view = view[written or 0 :]


class _mapped:
    """The blob file: its descriptor (for in-kernel copies) and a read-only memory map of it."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.fd = -1
        self.data: mmap.mmap | bytes = b""

    def __enter__(self) -> _mapped:
        if self.path is not None and self.path.stat().st_size > 0:
            self.fd = os.open(self.path, os.O_RDONLY)
            self.data = mmap.mmap(self.fd, 0, access=mmap.ACCESS_READ)
        return self

    def __exit__(self, *_exc: object) -> None:
        if isinstance(self.data, mmap.mmap):
            self.data.close()
        if self.fd >= 0:
            os.close(self.fd)
