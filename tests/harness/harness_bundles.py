"""Break copies of a built bundle the way past outages broke production (scripts/local/backend.py builds it).

The bundler precompiles `.pyc` files with unchecked hashes (Lambda's /var/task is read-only): Python then
uses them without looking at the source. Every mutation here therefore deletes the bytecode of what it
edits, or the edit would silently not take effect.
"""

from __future__ import annotations

import shutil
from pathlib import Path


def copy_bundle(bundle: Path, dest: Path) -> Path:
    shutil.copytree(bundle, dest, symlinks=True)
    return dest


def purge_bytecode(source: Path) -> None:
    """Delete the cached bytecode of one source file (module.py or package/__init__.py)."""
    for pyc in (source.parent / "__pycache__").glob(f"{source.stem}.*.pyc"):
        pyc.unlink()


def remove_distribution(bundle: Path, import_name: str) -> list[Path]:
    """Remove an installed package (its import folder or module and its .dist-info), as a bad build would."""
    removed = []
    normalized = import_name.replace("-", "_").lower()
    for path in sorted(bundle.iterdir()):
        name = path.name.lower()
        if name in (normalized, f"{normalized}.py") or (
            name.startswith(f"{normalized}-") and name.endswith(".dist-info")
        ):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
            removed.append(path)
    if not removed:
        raise FileNotFoundError(f"{import_name} is not installed in {bundle}")
    return removed


def find_module(bundle: Path, name: str) -> Path:
    """The one source file of module `name` (dotted path, or a bare name found anywhere in the backend)."""
    direct = bundle / name.replace(".", "/")
    for candidate in (direct.with_suffix(".py"), direct / "__init__.py"):
        if candidate.is_file():
            return candidate
    leaf = name.rpartition(".")[2]
    found = sorted(
        p
        for p in [*bundle.rglob(f"{leaf}.py"), *bundle.rglob(f"{leaf}/__init__.py")]
        if not any(part.endswith(".dist-info") for part in p.relative_to(bundle).parts)
    )
    if len(found) != 1:
        raise FileNotFoundError(
            f"expected exactly one module named {name} in {bundle}, found {found or 'none'}"
        )
    return found[0]


def drop_export(bundle: Path, module: str, symbol: str) -> Path:
    """Make `module` stop exporting `symbol` (a refactor that renamed or moved it), importers unchanged."""
    source = find_module(bundle, module)
    text = source.read_text()
    if symbol not in text:
        raise ValueError(f"{source} does not mention {symbol}: nothing to break")
    source.write_text(
        text + f"\n\n# harness: {symbol} no longer exported\ndel {symbol}\n"
        f"if '__all__' in globals():\n    __all__ = [n for n in __all__ if n != {symbol!r}]\n"
    )
    purge_bytecode(source)
    return source
