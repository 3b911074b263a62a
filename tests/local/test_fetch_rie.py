# mypy: allow-untyped-defs, allow-incomplete-defs
# (pyproject relaxes tests.* like this, but mypy names these files without the tests. prefix)
"""scripts.local.fetch_rie without the network: a stand-in wheel in the cache folder (pip is never called)."""

from __future__ import annotations

import os
import zipfile

import pytest

from scripts.local import fetch_rie


def fake_wheel(cache, members):
    wheels = cache / "wheels"
    wheels.mkdir(parents=True)
    with zipfile.ZipFile(wheels / f"aws_sam_cli-{fetch_rie.SAM_CLI_VERSION}-py3-none-any.whl", "w") as wheel:
        for name, data in members.items():
            wheel.writestr(name, data)


def test_extracts_only_the_emulator_and_is_idempotent(tmp_path):
    fake_wheel(tmp_path, {"samcli/local/rapid/aws-lambda-rie-x86_64": b"#!rie-x86", "samcli/other.py": b"x"})
    first = fetch_rie.fetch_rie("x86_64", tmp_path)
    assert first.read_bytes() == b"#!rie-x86" and os.access(first, os.X_OK)
    before = first.stat().st_mtime_ns
    assert fetch_rie.fetch_rie("x86_64", tmp_path) == first
    assert first.stat().st_mtime_ns == before
    assert sorted(p.name for p in first.parent.iterdir()) == ["aws-lambda-rie-x86_64"]


def test_a_wheel_without_the_binary_is_a_clear_error(tmp_path):
    fake_wheel(tmp_path, {"samcli/other.py": b"x"})
    with pytest.raises(fetch_rie.RieFetchError, match="has no samcli/local/rapid/aws-lambda-rie-arm64"):
        fetch_rie.fetch_rie("arm64", tmp_path)
