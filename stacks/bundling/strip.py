"""Debug sections out of native libraries: `strip --strip-debug`, never symbols, never patchelf-edited files.

Debug sections are never loaded at run time, so they only cost zip size and upload time; the symbol tables
stay, so tracebacks and dynamic linking are as before. The strip tool's version is part of the bundle's
input hash (another binutils may write other bytes).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

_ELF_MACHINES = {"x86_64": 62, "arm64": 183}
# auditwheel points an extension at its vendored libraries with a patchelf-written RUNPATH like
# $ORIGIN/../psycopg2_binary.libs; strip is known to corrupt patchelf-edited files, so those stay untouched.
_PATCHELF_RUNPATH = re.compile(rb"\$ORIGIN[^\x00]*\.libs")


def strip_identity() -> str:
    """The strip tool's version (part of the input hash: another binutils may write other bytes)."""
    strip = shutil.which("strip")
    proc = subprocess.run([strip, "--version"], capture_output=True, text=True) if strip else None
    return proc.stdout.splitlines()[0].strip() if proc and proc.returncode == 0 and proc.stdout else "absent"


def _strippable(path: Path, machine: int) -> bool:
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[5:6] != b"\x01" or int.from_bytes(data[18:20], "little") != machine:
        return False
    return b".debug_" in data and not _PATCHELF_RUNPATH.search(data)


def strip_native_libraries(directory: Path, architecture: str) -> list[str]:
    """`strip --strip-debug` every native library of the target architecture that carries debug sections;
    returns notices. Files in `*.libs` folders (vendored by auditwheel) and patchelf-edited extensions are
    skipped; a file strip cannot handle (e.g. aarch64 on a host without multi-arch binutils) is kept as
    installed, with a notice."""
    strip = shutil.which("strip")
    if not strip:
        return ["native libraries not stripped: no `strip` on PATH (install binutils)"]
    candidates = sorted(
        p
        for p in directory.rglob("*.so*")
        if p.is_file() and not any(part.endswith(".libs") for part in p.relative_to(directory).parts)
    )
    notices = []
    for path in (p for p in candidates if _strippable(p, _ELF_MACHINES[architecture])):
        stripped = path.with_name(path.name + ".stripped")
        proc = subprocess.run(
            [strip, "--strip-debug", "-o", str(stripped), str(path)], capture_output=True, text=True
        )
        if proc.returncode != 0 or not stripped.is_file():
            stripped.unlink(missing_ok=True)
            notices.append(
                f"{path.relative_to(directory)} kept with its debug sections: {proc.stderr.strip()[:200]}"
            )
            continue
        stripped.chmod(path.stat().st_mode & 0o777)
        os.replace(stripped, path)  # a new inode: a hard link into uv's cache is replaced, never written
    return notices
