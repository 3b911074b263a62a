"""A local function runs under its own runtime's Python when this machine has it: its bundle holds native
extensions built for that Python (pydantic_core for python3.12 does not load in 3.11). Otherwise it runs
under this host's Python, with a warning that says why."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from scripts.local import emulator, stack
from stacks.bundling.spec import BundlingError

HOST = f"{sys.version_info.major}.{sys.version_info.minor}"
OTHER = "3.12" if HOST != "3.12" else "3.11"


class _Started(Exception):
    """Raised by the fake emulator's start: the test reads what it was given."""


def _function(tmp_path: Path, runtime: str) -> stack.LocalFunction:
    (tmp_path / "handler.py").write_text("def main(event, context):\n    return 1\n")
    return stack.LocalFunction(
        "Fn", "Fn/Function", "handler.main", runtime, "x86_64", 3, 128, {}, (), tmp_path
    )


def _start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runtime: str) -> tuple[dict[str, Any], list[str]]:
    given: dict[str, Any] = {}

    class FakeEmulator:
        def __init__(self, **kwargs: Any) -> None:
            given.update(kwargs)

        def start(self) -> None:
            raise _Started

    monkeypatch.setattr(stack, "LambdaEmulator", FakeEmulator)
    logs: list[str] = []
    runtimes = stack.Runtimes({"Fn": _function(tmp_path, runtime)}, log=logs.append, bootstrap=("zygote",))
    with pytest.raises(_Started):
        runtimes.invoke("Fn", {})
    return given, logs


def test_a_function_of_another_python_runs_under_that_python_when_the_machine_has_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stack, "interpreter_for", lambda version: f"/opt/python{version}/bin/python{version}")
    given, logs = _start(tmp_path, monkeypatch, f"python{OTHER}")
    assert given["python"] == f"/opt/python{OTHER}/bin/python{OTHER}" and given["python_version"] == OTHER
    assert given["bootstrap"] == (), "the zygote serves the host's Python only"
    assert not [line for line in logs if "WARNING" in line]


def test_without_that_python_it_runs_under_the_host_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing(version: str) -> str:
        raise BundlingError(f"python{version} (the python{version} runtime's interpreter) is not on PATH")

    monkeypatch.setattr(stack, "interpreter_for", missing)
    given, logs = _start(tmp_path, monkeypatch, f"python{OTHER}")
    assert given["python"] == sys.executable and given["python_version"] is None
    assert given["bootstrap"] == ("zygote",)
    assert any(f"runs under this host's python{HOST}" in line and "is not on PATH" in line for line in logs)


def test_a_function_of_the_hosts_python_keeps_the_zygote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    given, _ = _start(tmp_path, monkeypatch, f"python{HOST}")
    assert given["python"] == sys.executable and given["bootstrap"] == ("zygote",)


def test_awslambdaric_is_installed_for_another_python_once_with_its_native_client(tmp_path: Path) -> None:
    # GIVEN no runtime folder for the other Python yet
    folder = emulator.runtime_path(tmp_path, python_version=OTHER)
    # THEN awslambdaric's C client is the one built for that Python, at this venv's versions
    tag = f"cpython-{OTHER.replace('.', '')}"
    assert [p.name for p in folder.glob("runtime_client*.so") if tag in p.name], list(folder.rglob("*.so"))
    assert emulator.runtime_path(tmp_path, python_version=OTHER) == folder
    assert emulator.runtime_path(tmp_path) != folder  # this Python keeps its links into the venv
