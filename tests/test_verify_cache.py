"""Verification reuse: a check is carried over to a new bundle only when every bundle file it read is
unchanged and no file was added or removed; anything else runs it again, and a failure is never cached."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from stacks.bundling import verify_cache
from stacks.bundling.spec import BundleResult, BundleSpec, BundlingError, HandlerCheck
from stacks.bundling.verification import verify_bundle

CHECKS = [
    HandlerCheck(function="Api", handler="api.main"),
    HandlerCheck(function="Jobs", handler="jobs.main", environment=(("JOBS_MODE", "batch"),)),
]


def _bundle(root: Path) -> Path:
    """Two handlers sharing nothing but the standard library; `api` reads a data file at import."""
    bundle = root / "bundle"
    (bundle / "api_pkg").mkdir(parents=True)
    (bundle / "api_pkg" / "__init__.py").write_text("VALUE = 1\n")
    (bundle / "settings.json").write_text('{"greeting": "hi"}\n')
    (bundle / "api.py").write_text(
        "import json, pathlib\n"
        "from api_pkg import VALUE\n"
        "SETTINGS = json.loads((pathlib.Path(__file__).resolve().parent / 'settings.json').read_text())\n"
        "def main(event, context):\n    return SETTINGS['greeting']\n"
    )
    (bundle / "jobs.py").write_text(
        "import os\nfrom jobs_pkg import run\nMODE = os.environ['JOBS_MODE']\n"
        "def main(event, context):\n    return run()\n"
    )
    (bundle / "jobs_pkg").mkdir()
    (bundle / "jobs_pkg" / "__init__.py").write_text("def run():\n    return 'ran'\n")
    return bundle


def _result(bundle: Path) -> BundleResult:
    return BundleResult(
        directory=bundle,
        zip_path=bundle.parent / "bundle.zip",
        asset_hash="test",
        tool="test",
        cache_hit=False,
        seconds=0.0,
        unzipped_bytes=0,
        zipped_bytes=0,
        bytecode=False,
    )


def _spec(root: Path) -> BundleSpec:
    return BundleSpec(
        source_dir=root / "bundle", requirements=root / "requirements.txt", cache_dir=root / "cache"
    )


@pytest.fixture
def built(tmp_path: Path) -> tuple[Path, BundleSpec]:
    bundle = _bundle(tmp_path)
    spec = _spec(tmp_path)
    # GIVEN both handlers verified once on this bundle
    first = verify_bundle(_result(bundle), spec, CHECKS)
    assert first.ran == ("Api", "Jobs") and first.carried == ()
    return bundle, spec


def test_nothing_changed_carries_every_check_over(built: tuple[Path, BundleSpec]) -> None:
    bundle, spec = built
    again = verify_bundle(_result(bundle), spec, CHECKS)
    assert again.ran == () and again.carried == ("Api", "Jobs")


def test_an_edit_reruns_only_the_checks_that_read_the_file(built: tuple[Path, BundleSpec]) -> None:
    bundle, spec = built
    # WHEN a module only the jobs handler imports changes
    (bundle / "jobs_pkg" / "__init__.py").write_text("def run():\n    return 'ran twice'\n")
    done = verify_bundle(_result(bundle), spec, CHECKS)
    # THEN only Jobs runs again
    assert done.ran == ("Jobs",) and done.carried == ("Api",)


def test_a_broken_edit_is_never_hidden_by_an_earlier_pass(built: tuple[Path, BundleSpec]) -> None:
    bundle, spec = built
    (bundle / "jobs_pkg" / "__init__.py").write_text("def walk():\n    return 'renamed'\n")
    with pytest.raises(BundlingError, match=r"function Jobs .*cannot import name 'run'"):
        verify_bundle(_result(bundle), spec, CHECKS)
    # AND the failure was not recorded: it fails again, and passes once fixed
    with pytest.raises(BundlingError, match="function Jobs"):
        verify_bundle(_result(bundle), spec, CHECKS)
    (bundle / "jobs_pkg" / "__init__.py").write_text("def run():\n    return 'ran'\n")
    assert verify_bundle(_result(bundle), spec, CHECKS).carried == ("Api", "Jobs")


def test_a_data_file_read_at_import_is_part_of_the_evidence(built: tuple[Path, BundleSpec]) -> None:
    bundle, spec = built
    # WHEN a file the api module opens at import (through a resolved path) changes
    (bundle / "settings.json").write_text('{"greeting": "hello"}\n')
    assert verify_bundle(_result(bundle), spec, CHECKS).ran == ("Api",)
    # AND a broken one fails
    (bundle / "settings.json").write_text("not json\n")
    with pytest.raises(BundlingError, match=r"function Api .*JSONDecodeError"):
        verify_bundle(_result(bundle), spec, CHECKS)


def test_an_added_file_reruns_every_check(built: tuple[Path, BundleSpec]) -> None:
    bundle, spec = built
    # A new file can change an import without touching a file read before (an optional module appearing).
    (bundle / "jobs_pkg" / "optional.py").write_text("X = 1\n")
    assert verify_bundle(_result(bundle), spec, CHECKS).ran == ("Api", "Jobs")


def test_a_different_environment_value_is_a_different_check(built: tuple[Path, BundleSpec]) -> None:
    bundle, spec = built
    other = [CHECKS[0], HandlerCheck(function="Jobs", handler="jobs.main", environment=(("JOBS_MODE", "x"),))]
    assert verify_bundle(_result(bundle), spec, other).ran == ("Jobs",)
    # AND a variable the import needs, missing, fails as before
    bare = [HandlerCheck(function="Jobs", handler="jobs.main")]
    with pytest.raises(BundlingError, match="JOBS_MODE"):
        verify_bundle(_result(bundle), spec, bare)


def test_a_bundle_reached_through_a_symlink_records_what_its_code_read(tmp_path: Path) -> None:
    # GIVEN a bundle whose code resolves its own path (the cache folder may be a symlink)
    real = tmp_path / "real"
    real.mkdir()
    _bundle(real)
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    bundle = tmp_path / "link" / "bundle"
    spec = _spec(tmp_path / "link")
    verify_bundle(_result(bundle), spec, CHECKS[:1])
    # WHEN the data file it reads through the resolved path changes
    (real / "bundle" / "settings.json").write_text("{broken\n")
    # THEN the check runs again, and fails
    with pytest.raises(BundlingError, match=r"function Api .*JSONDecodeError"):
        verify_bundle(_result(bundle), spec, CHECKS[:1])


def test_reuse_off_always_runs(built: tuple[Path, BundleSpec]) -> None:
    bundle, spec = built
    assert verify_bundle(_result(bundle), spec, CHECKS, reuse=False).ran == ("Api", "Jobs")


def test_records_name_the_files_read_and_only_those(built: tuple[Path, BundleSpec]) -> None:
    bundle, spec = built
    records = list((spec.cache_dir / "verified").glob("*.json"))
    assert len(records) == 2
    listing = verify_cache.bundle_listing(bundle)
    read_sets = []
    for record in records:
        data = json.loads(record.read_text())
        assert data["listing"] == listing
        read_sets.append(set(data["files"]))
    assert {"api.py", "api_pkg/__init__.py", "settings.json"} in read_sets
    assert {"jobs.py", "jobs_pkg/__init__.py"} in read_sets


def test_remember_skips_a_record_whose_file_vanished(tmp_path: Path) -> None:
    bundle = tmp_path / "b"
    bundle.mkdir()
    (bundle / "a.py").write_text("A = 1\n")
    listing = verify_cache.bundle_listing(bundle)
    verify_cache.remember(tmp_path / "r", "k", bundle, listing, ["a.py", "gone.py"])
    assert not verify_cache.proven(tmp_path / "r", "k", bundle, listing)
    verify_cache.remember(tmp_path / "r", "k", bundle, listing, ["a.py"])
    assert verify_cache.proven(tmp_path / "r", "k", bundle, listing)
    os.unlink(bundle / "a.py")
    assert not verify_cache.proven(tmp_path / "r", "k", bundle, verify_cache.bundle_listing(bundle))
