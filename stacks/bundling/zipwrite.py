"""Zip entries deflated once and reused: a stored run of entries plus an index, merged with new entries.

A bundle's zip is sorted by name, so dependency entries and the source's entries interleave. Each entry is
kept as its local header, name and deflated data (a blob: a local header carries no offset, so a blob is the
same wherever it lands in a zip); a merge copies runs of stored blobs as they are and writes the central
directory from the index. The bytes equal what `zipfile` writes for the same files (sorted, dated
1980-01-01, mode 0644 or 0755, deflate level 6, or stored by `compress_type`), which the tests compare: two
clean builds give the same zip, and CDK uploads a .zip asset as it is.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

# Local header, central directory entry and end record of a zip (APPNOTE 4.3.7, 4.3.12, 4.3.16).
_LOCAL = struct.Struct("<IHHHHHIIIHH")
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_END = struct.Struct("<IHHHHIIH")
_DOS_DATE = (0 << 9) | (1 << 5) | 1  # 1980-01-01, 00:00:00: no build time reaches the zip
_ZIP_VERSION = 20  # as zipfile writes it, deflated or stored
_MADE_ON_UNIX = 3 << 8
_ZIP_MAX = 0xFFFF_FFFF
MAX_ENTRIES = 0xFFFF  # without zip64
# Already-compressed formats, stored as they are: deflating them again costs CPU and saves nothing
# (botocore's 958 `.json.gz`, 15.6 MB: 0.25 s of a cold build's CPU for 6 KB, 0.02% of the zip). Decided
# by name, as trying deflate first would cost what it saves; the entry is still what zipfile writes with
# that compress_type.
STORED_SUFFIXES = (".gz", ".tgz", ".bz2", ".xz", ".zst", ".zip", ".whl", ".jar", ".png", ".jpg", ".jpeg")


class ZipLimitError(ValueError):
    """The entries do not fit a zip without zip64."""


@dataclass(frozen=True)
class Entry:
    """One zip entry: its blob (local header + name + deflated data) is `length` bytes at `offset` in its
    store's blob file (for a new entry, `offset` is its index in NewEntries.blobs)."""

    name: str
    crc: int
    size: int
    packed_size: int
    executable: bool
    offset: int
    length: int


@dataclass(frozen=True)
class Store:
    """Entries deflated once (store_entries): their index and the blob file holding them."""

    entries: Sequence[Entry]
    blob_path: Path


def _flags(name: str) -> int:
    return 0 if name.isascii() else 0x800  # UTF-8 name flag, as zipfile sets it


def compress_type(name: str) -> int:
    """How the zip holds the file `name`: stored when its type is already compressed, else deflated."""
    return zipfile.ZIP_STORED if name.lower().endswith(STORED_SUFFIXES) else zipfile.ZIP_DEFLATED


def _deflate_file(item: tuple[str, Path]) -> tuple[bytes, Entry]:
    """One file's blob and entry (at offset 0), as zipfile writes it: raw deflate, level 6, or stored."""
    name, path = item
    data = path.read_bytes()
    method = compress_type(name)
    if method == zipfile.ZIP_STORED:
        packed = data
    else:
        compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
        packed = compressor.compress(data) + compressor.flush()
    if len(data) > _ZIP_MAX or len(packed) > _ZIP_MAX:
        raise ZipLimitError(f"{name} does not fit a zip without zip64 (over 4 GiB)")
    crc = zlib.crc32(data)
    encoded = name.encode("utf-8")
    header = _LOCAL.pack(
        0x04034B50, _ZIP_VERSION, _flags(name), method, 0, _DOS_DATE, crc, len(packed),
        len(data), len(encoded), 0,
    )  # fmt: skip
    blob = header + encoded + packed
    executable = bool(path.stat().st_mode & stat.S_IXUSR)
    return blob, Entry(name, crc, len(data), len(packed), executable, 0, len(blob))


def _deflate_all(files: Sequence[tuple[str, Path]]) -> Iterator[tuple[bytes, Entry]]:
    """_deflate_file of each file, in order, on every core (zlib releases the GIL). In batches of 16 files:
    a future per file cost about 0.1 s of CPU over a layer's 3,400 files, most of them small."""
    batches = [files[i : i + 16] for i in range(0, len(files), 16)]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for batch in pool.map(lambda chunk: [*map(_deflate_file, chunk)], batches):
            yield from batch


class NewEntries:
    """Entries deflated now (source, bytecode, build_info), held in memory until the merge."""

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.blobs: list[bytes] = []

    def add_files(self, files: Sequence[tuple[str, Path]]) -> None:
        for blob, entry in _deflate_all(files):
            self.entries.append(replace(entry, offset=len(self.blobs)))
            self.blobs.append(blob)


def store_entries(files: Sequence[tuple[str, Path]], blob_path: Path, index_path: Path) -> list[Entry]:
    """Deflate `files` (sorted) into one blob file, sealed, and write its index; returns the index."""
    entries = []
    digest = hashlib.sha256()
    with blob_path.open("wb") as out:
        for blob, entry in _deflate_all(files):
            entries.append(replace(entry, offset=out.tell()))
            out.write(blob)
            digest.update(blob)
    seal(blob_path, digest.hexdigest())
    index_path.write_text(json.dumps([list(e.__dict__.values()) for e in entries], separators=(",", ":")))
    return entries


def seal(path: Path, digest: str | None = None) -> None:
    """Record `path`'s sha256 beside it (`digest` when its writer computed it), for `intact`."""
    _seal_of(path).write_text(digest or _sha256(path))


def intact(path: Path) -> bool:
    """Whether `path` still has the sha256 `seal` recorded. Stored blobs are copied into zips as they are,
    unchecked: a cached blob or bundle zip damaged since it was written (a disk error, a hand edit) would
    otherwise deploy as a zip whose entries fail their CRC. The caches make such an entry again."""
    try:
        return _seal_of(path).read_text() == _sha256(path)
    except OSError:
        return False


def sealed(path: Path) -> str:
    """The sha256 `seal` recorded for `path`."""
    return _seal_of(path).read_text()


def _seal_of(path: Path) -> Path:
    return path.with_name(f"{path.name}.sha256")


def _sha256(path: Path) -> str:
    with path.open("rb") as data:
        return hashlib.file_digest(data, "sha256").hexdigest()


def load_index(index_path: Path) -> list[Entry]:
    return [Entry(*row) for row in json.loads(index_path.read_text())]


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


def write_zip(directory: Path, zip_path: Path) -> int:
    """A byte-reproducible zip of every file under `directory`, as the bundle's (sorted, fixed dates,
    normalised modes, deflated on every core); returns its size. For outputs with no stored layer."""
    new = NewEntries()
    new.add_files(
        sorted((p.relative_to(directory).as_posix(), p) for p in directory.rglob("*") if p.is_file())
    )
    return write_merged(zip_path, (), new, replaced=())


def write_merged(zip_path: Path, stores: Sequence[Store], new: NewEntries, *, replaced: Iterable[str]) -> int:
    """Write a zip of the stores' entries (minus `replaced` names) and the new ones, in name order; a name
    in a later store replaces it in an earlier one, and a new entry replaces both.

    Runs of consecutive entries of one store are copied in one call, never recompressed. Returns the zip's
    size.
    """
    chosen = {e.name: (index, e) for index, store in enumerate(stores) for e in store.entries}
    for name in replaced:
        chosen.pop(name, None)
    chosen.update((e.name, (-1, e)) for e in new.entries)
    merged = sorted(chosen.items())
    if len(merged) >= MAX_ENTRIES:
        raise ZipLimitError(f"{len(merged)} files: more than a zip without zip64 can hold")
    central = bytearray()
    runs: list[list[int]] = []  # [store, start, end] of consecutive blobs in one store; store -1: a new entry
    position = 0
    for name, (source, entry) in merged:
        if position > _ZIP_MAX:
            raise ZipLimitError(f"{name}: the zip is over 4 GiB, more than a zip without zip64 can hold")
        encoded = name.encode("utf-8")
        mode = (0o100755 if entry.executable else 0o100644) << 16
        central += _CENTRAL.pack(
            0x02014B50, _MADE_ON_UNIX | _ZIP_VERSION, _ZIP_VERSION, _flags(name), compress_type(name), 0,
            _DOS_DATE, entry.crc, entry.packed_size, entry.size, len(encoded), 0, 0, 0, 0, mode, position,
        ) + encoded  # fmt: skip
        if source >= 0 and runs and runs[-1][0] == source and runs[-1][2] == entry.offset:
            runs[-1][2] += entry.length
        else:
            runs.append([source, entry.offset, entry.offset + entry.length])
        position += entry.length
    if position > _ZIP_MAX:
        raise ZipLimitError("the zip is over 4 GiB, more than a zip without zip64 can hold")
    with zip_path.open("wb") as out, contextlib.ExitStack() as opened:
        blob_files = [opened.enter_context(store.blob_path.open("rb")).fileno() for store in stores]
        for source, start, end in runs:
            if source < 0:
                out.write(new.blobs[start])
            else:
                _copy(blob_files[source], out, start, end)
        out.write(central)
        out.write(_END.pack(0x06054B50, 0, 0, len(merged), len(merged), len(central), position, 0))
    return position + len(central) + _END.size


def _copy(blob_file: int, out: BinaryIO, start: int, end: int) -> None:
    """Append bytes start..end of `blob_file` to `out`: in the kernel (no trip through this process) where
    the system can, else read and written."""
    while start < end:
        out.flush()  # the kernel copy writes at the file's position: what `out` buffered goes first
        try:
            copied = os.copy_file_range(blob_file, out.fileno(), end - start, start)
        except (AttributeError, OSError):  # not on this system, or not between these files
            copied = 0
        if copied <= 0:
            chunk = os.pread(blob_file, end - start, start)
            if not chunk:
                raise OSError(f"a blob file ends at {start}, before the {end} bytes its index names")
            copied = out.write(chunk)
        start += copied
