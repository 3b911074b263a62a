"""The static import closure (stacks/bundling/import_closure.py), pure-Python sdists, and verification of a
backend laid out unlike the sample (tests/fixtures/layout_backend): dotted handler modules, a namespace
package, an import-time setting, a lazily imported dependency published only as an sdist."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from stacks.bundling import import_closure, install, sdist
from stacks.bundling.build import build_bundle
from stacks.bundling.input_hash import input_hash, installer_identity
from stacks.bundling.spec import (
    DEFAULT_EXCLUDES,
    BundleResult,
    BundleSpec,
    BundlingError,
    HandlerCheck,
    source_files,
)
from stacks.bundling.verification import verify_bundle

REPO_ROOT = Path(__file__).resolve().parents[1]
LAYOUT_BACKEND = REPO_ROOT / "tests" / "fixtures" / "layout_backend"
PROBE = REPO_ROOT / "lambda_src" / "probe" / "credmate_probe.py"
HANDLERS = (("Auth", "handlers.auth.main"), ("CreateGoal", "handlers.goals.create_goal.main"))
ENV = (
    ("LAYOUT_SERVICE_NAME", "licensing"),
    ("LAYOUT_EXPECT_MEMORY", "512"),
    ("LAYOUT_EXPECT_TIMEOUT_MS", "9000"),
)


def layout_spec(backend: Path, cache: Path, **changes: object) -> BundleSpec:
    spec = BundleSpec(
        source_dir=backend / "src",
        requirements=backend / "requirements.txt",
        cache_dir=cache,
        extra_files=(("credmate_probe.py", PROBE),),
        handlers=HANDLERS,
        bytecode_modules=("credmate_probe",),
    )
    return replace(spec, **changes)  # type: ignore[arg-type]


def checks(**changes: object) -> list[HandlerCheck]:
    return [
        replace(
            HandlerCheck(
                function=function,
                handler="credmate_probe.handler",
                http_health=function == "Auth",
                health_path="/auth/health",
                memory_mb=512,
                timeout_seconds=9,
                environment=(
                    *ENV,
                    ("CREDMATE_REAL_HANDLER", real),
                    ("CREDMATE_FUNCTION_LABEL", function),
                ),
            ),
            **changes,  # type: ignore[arg-type]
        )
        for function, real in HANDLERS
    ]


@pytest.fixture
def layout_backend(tmp_path: Path) -> Path:
    dest = tmp_path / "backend"
    shutil.copytree(LAYOUT_BACKEND, dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


@pytest.fixture(scope="module")
def layout_built(tmp_path_factory: pytest.TempPathFactory) -> BundleResult:
    backend = tmp_path_factory.mktemp("layout") / "backend"
    shutil.copytree(LAYOUT_BACKEND, backend, ignore=shutil.ignore_patterns("__pycache__"))
    return build_bundle(layout_spec(backend, REPO_ROOT / ".cache"))


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


# ---------------------------------------------------------------------------------------------------------
# A backend with its own layout bundles and verifies as it is


def test_layout_backend_bundles_and_verifies_with_its_own_handlers(layout_built: BundleResult) -> None:
    root = layout_built.directory
    # docopt has only a source distribution on PyPI: built locally into a pure wheel and installed
    assert any((path / "docopt.py").is_file() for path in layout_built.paths)
    info = json.loads((root / "build_info.json").read_text())
    assert info["built_wheels"] == ["docopt-0.6.2-py2.py3-none-any.whl"]
    # tests are excluded, so their `import pytest` (not a requirement) is never checked
    assert not (root / "handlers" / "tests").exists()
    # AND the import-time setting, the context object and health_path reach the real handler
    verify_bundle(layout_built, layout_spec(LAYOUT_BACKEND, REPO_ROOT / ".cache"), checks())


def test_build_info_records_each_functions_closure(layout_built: BundleResult) -> None:
    info = json.loads((layout_built.directory / "build_info.json").read_text())
    # CreateGoal imports docopt only inside a function (through contexts/provider/registry.py)
    assert info["lazy_imports"] == {"Auth": [], "CreateGoal": ["docopt"]}
    assert info["closure"]["CreateGoal"]["lazy"] == ["contexts/provider/registry.py"]
    assert "handlers/goals/create_goal.py" in info["closure"]["CreateGoal"]["init"]
    assert "contexts/provider/models/license.py" in info["closure"]["Auth"]["init"]
    assert "settings.py" in info["closure"]["Auth"]["init"]
    assert "settings.py" not in info["closure"]["CreateGoal"]["init"] + info["closure"]["CreateGoal"]["lazy"]


def _probe_in_bundle(bundle: BundleResult, function: str, real: str) -> dict[str, object]:
    """The probe wrapper answering a probe event inside the bundle, in an isolated interpreter."""
    code = (
        "import json, sys; sys.path[0:0] = sys.argv[1:]; import credmate_probe; "
        "r = credmate_probe.handler({'credmate_probe': {'imports': ['antigravity']}}, None); "
        "r['loaded'] = sorted(m for m in ('docopt', 'antigravity', 'contexts.provider.registry') "
        "if m in sys.modules); "
        "print(json.dumps(r))"
    )
    env = {
        **dict(ENV),
        "CREDMATE_REAL_HANDLER": real,
        "CREDMATE_FUNCTION_LABEL": function,
        "CREDMATE_CHECKS": '{"pre":{"http_health":false,"health_path":"/health","uses_database":false,'
        '"schema_mismatch":"fail"},"post":null}',
    }
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-B", "-c", code, *map(str, bundle.paths)],
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", ""), **env},
        check=True,
    )
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_probe_imports_exactly_the_recorded_list(layout_built: BundleResult) -> None:
    create = _probe_in_bundle(layout_built, "CreateGoal", "handlers.goals.create_goal.main")
    assert create["probe"] == "ok" and create["imports_checked"] == ["docopt"]
    # no app.versions in this backend: versions come from build_info.json, without an error
    info = json.loads((layout_built.directory / "build_info.json").read_text())
    assert (create["versions_source"], create["code_version"]) == ("build_info.json", info["code_version"])
    assert create["loaded"] == ["docopt"], "the recorded module, never the event's"
    auth = _probe_in_bundle(layout_built, "Auth", "handlers.auth.main")
    assert auth["imports_checked"] == [] and auth["loaded"] == []


def test_wrong_health_path_or_context_fails_verification(layout_built: BundleResult) -> None:
    spec = layout_spec(LAYOUT_BACKEND, REPO_ROOT / ".cache")
    with pytest.raises(BundlingError, match=r"function Auth .*GET /health returned 404"):
        verify_bundle(layout_built, spec, [c for c in checks(health_path="/health") if c.function == "Auth"])
    # the handler answers 500 unless the context carries the function's memory and timeout
    with pytest.raises(BundlingError, match=r"function Auth .*GET /auth/health returned 500"):
        verify_bundle(layout_built, spec, [c for c in checks(memory_mb=1024) if c.function == "Auth"])
    with pytest.raises(BundlingError, match=r"GET /auth/health returned 500"):
        verify_bundle(layout_built, spec, [c for c in checks(timeout_seconds=60) if c.function == "Auth"])


def test_missing_import_time_setting_fails_verification(layout_built: BundleResult) -> None:
    spec = layout_spec(LAYOUT_BACKEND, REPO_ROOT / ".cache")
    bare = [replace(c, environment=c.environment[1:]) for c in checks() if c.function == "Auth"]
    with pytest.raises(BundlingError, match=r"function Auth .*KeyError: 'LAYOUT_SERVICE_NAME'"):
        verify_bundle(layout_built, spec, bare)


# ---------------------------------------------------------------------------------------------------------
# What the closure stops


def test_lazily_imported_package_missing_from_requirements_stops_synth(
    layout_backend: Path, shared_cache: Path
) -> None:
    create = layout_backend / "src" / "handlers" / "goals" / "create_goal.py"
    _edit(create, "    from contexts.provider.registry import parse_goal\n", "    import passlib.context\n")
    line = _line_of(create, "import passlib.context")
    with pytest.raises(BundlingError) as caught:
        build_bundle(layout_spec(layout_backend, shared_cache))
    message = str(caught.value)
    assert (
        f"handlers/goals/create_goal.py:{line}: No module named 'passlib.context' "
        "(inside a function; reached by function CreateGoal)"
    ) in message
    assert f"passlib is not in {layout_backend / 'requirements.txt'}: add it there (pinned)" in message
    assert "Auth" not in message


def test_lazily_imported_name_no_longer_exported_stops_synth(
    layout_backend: Path, shared_cache: Path
) -> None:
    _edit(layout_backend / "src" / "contexts" / "provider" / "registry.py", "def parse_goal(", "def parse(")
    create = layout_backend / "src" / "handlers" / "goals" / "create_goal.py"
    line = _line_of(create, "import parse_goal")
    with pytest.raises(BundlingError) as caught:
        build_bundle(layout_spec(layout_backend, shared_cache))
    message = str(caught.value)
    assert (
        f"handlers/goals/create_goal.py:{line}: cannot import name 'parse_goal' from "
        "'contexts.provider.registry' (inside a function; reached by function CreateGoal)"
    ) in message
    assert "contexts/provider/registry.py) no longer defines parse_goal" in message


def test_name_lost_behind_star_imports_stops_synth(layout_backend: Path, shared_cache: Path) -> None:
    # `from contexts.provider import License` resolves through two `from X import *`: break the end
    _edit(
        layout_backend / "src" / "contexts" / "provider" / "models" / "license.py",
        "class License:",
        "class Lic:",
    )
    with pytest.raises(
        BundlingError, match=r"handlers/auth.py:4: cannot import name 'License'.*reached by function Auth\)"
    ):
        build_bundle(layout_spec(layout_backend, shared_cache))


def test_lazy_dependency_name_is_checked_in_the_bundle(layout_backend: Path, shared_cache: Path) -> None:
    # A dependency's exports are only known by importing it: verification does, naming file:line
    registry = layout_backend / "src" / "contexts" / "provider" / "registry.py"
    _edit(registry, "from docopt import docopt", "from docopt import docopt_v2")
    _edit(registry, "str(docopt(", "str(docopt_v2(")
    spec = layout_spec(layout_backend, shared_cache)
    bundle = build_bundle(spec)
    with pytest.raises(BundlingError) as caught:
        verify_bundle(bundle, spec, checks())
    message = str(caught.value)
    assert (
        "function CreateGoal (handler credmate_probe.handler): contexts/provider/registry.py:1: lazy import "
        "of docopt failed: ImportError: cannot import name 'docopt_v2' from 'docopt'"
    ) in message
    assert "function Auth" not in message


def _analyze(
    files: dict[str, str], tmp_path: Path, installed: set[str] | None = None, python_version: str = "3.11"
) -> import_closure.Closure:
    src = tmp_path / "src"
    for relative, text in files.items():
        (src / relative).parent.mkdir(parents=True, exist_ok=True)
        (src / relative).write_text(textwrap.dedent(text))
    return import_closure.analyze(
        src,
        source_files(src, DEFAULT_EXCLUDES),
        (("Fn", "app.main"),),
        installed=installed if installed is not None else set(),
        python_version=python_version,
    )


def _problems(closure: import_closure.Closure) -> list[tuple[str, str]]:
    return [(p.site.where, p.message) for p in closure.problems]


@pytest.mark.parametrize(
    ("guarded", "unguarded"),
    [
        (
            "try:\n    import ujson\nexcept ImportError:\n    ujson = None\n",
            "import ujson\n",
        ),
        (
            "try:\n    import ujson\nexcept (ValueError, ModuleNotFoundError):\n    ujson = None\n",
            "import ujson\n",
        ),
        (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ujson import Thing\n",
            "from ujson import Thing\n",
        ),
        (
            "def f():\n    try:\n        from shared import gone\n    except ImportError:\n"
            "        return None\n",
            "def f():\n    from shared import gone\n",
        ),
        (
            # a `raise` the handler may not reach leaves it a guard
            "try:\n    import ujson\nexcept ImportError:\n    if STRICT:\n        raise\n    ujson = None\n",
            "import ujson\n",
        ),
        (
            "import importlib.util\nif importlib.util.find_spec('orjson'):\n    import orjson\n",
            "import orjson\n",
        ),
        (
            "from importlib import util\nif util.find_spec('orjson') is not None:\n"
            "    from orjson import dumps\n",
            "from orjson import dumps\n",
        ),
        (
            "from importlib.util import find_spec\nif find_spec('orjson') is None:\n    orjson = None\n"
            "else:\n    import orjson.parser\n",
            "import orjson.parser\n",
        ),
        (
            "import importlib.util\ndef f():\n    if not importlib.util.find_spec('orjson'):\n"
            "        return\n    else:\n        import orjson\n",
            "def f():\n    import orjson\n",
        ),
        (
            "import importlib, importlib.util\n"
            "if importlib.util.find_spec('orjson') and importlib.util.find_spec('ujson'):\n"
            "    importlib.import_module('ujson')\n",
            "import importlib\nimportlib.import_module('ujson')\n",
        ),
    ],
    ids=[
        "except-ImportError",
        "tuple-with-ModuleNotFoundError",
        "TYPE_CHECKING",
        "lazy-source-name",
        "conditional-raise",
        "find_spec-truthy",
        "util.find_spec-is-not-None",
        "find_spec-is-None-else-submodule",
        "not-find_spec-else-lazy",
        "find_spec-and-import_module",
    ],
)
def test_optional_imports_are_never_errors(tmp_path: Path, guarded: str, unguarded: str) -> None:
    base = {"shared.py": "X = 1\n"}
    assert _analyze({**base, "app.py": guarded + "def main(e, c): pass\n"}, tmp_path / "a").problems == []
    (problem,) = _analyze({**base, "app.py": unguarded + "def main(e, c): pass\n"}, tmp_path / "b").problems
    assert problem.site.file == "app.py" and problem.functions == ("Fn",)


def test_definitions_that_count_as_exports(tmp_path: Path) -> None:
    shared = """
        import os as operating_system
        from json import dumps
        A: int = 1
        B = C = 2
        (D, [E, *F]) = (1, [2, 3])
        for G in range(1):
            pass
        with open(__file__) as H:
            pass
        def setup():
            global I
            I = 1
        class J:
            K = 1
        if (L := 1):
            pass
    """
    names = "operating_system, dumps, A, B, C, D, E, F, G, H, I, J, sub, L"
    app = f"def main(e, c):\n    from shared import {names}\n"
    closure = _analyze({"shared/__init__.py": shared, "shared/sub.py": "", "app.py": app}, tmp_path)
    assert [str(p) for p in closure.problems] == []
    # K is a class attribute, not a module one
    closure = _analyze(
        {"shared/__init__.py": shared, "app.py": "def main(e, c):\n    from shared import K\n"},
        tmp_path / "k",
    )
    assert [p.message for p in closure.problems] == ["cannot import name 'K' from 'shared'"]


def test_module_getattr_and_dependency_star_accept_any_name(tmp_path: Path) -> None:
    closure = _analyze(
        {
            "lazy.py": "def __getattr__(name):\n    return name\n",
            "starred.py": "from somedep import *\n",
            "dynamic.py": "for n in ('A', 'B'):\n    globals()[n] = n\n",
            "app.py": "from lazy import anything\nfrom starred import whatever\nfrom dynamic import A\n"
            "def main(e, c): pass\n",
        },
        tmp_path,
        installed={"somedep"},
    )
    assert closure.problems == []


def test_relative_imports_resolve_from_the_package(tmp_path: Path) -> None:
    closure = _analyze(
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from . import b\nfrom .b import Y\nfrom .. import nothing\n"
            "from ..json import dumps\n",
            "pkg/b.py": "Y = 1\n",
            "app.py": "import pkg.a\ndef main(e, c): pass\n",
        },
        tmp_path,
    )
    assert [(p.site.where, p.message) for p in closure.problems] == [
        ("pkg/a.py:3", "relative import beyond the top-level package"),
        ("pkg/a.py:4", "relative import beyond the top-level package"),  # never the stdlib's json
    ]


def test_runtime_provided_and_stdlib_modules_resolve_without_the_bundle(tmp_path: Path) -> None:
    closure = _analyze(
        {
            "app.py": "import boto3, botocore.config, json, tomllib\n"
            "def main(e, c):\n    import awslambdaric\n"
        },
        tmp_path,
    )
    assert closure.problems == [] and closure.lazy_imports() == {"Fn": []}


def test_installed_top_levels_read_the_folder_and_dist_info(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "nspkg" / "sub").mkdir(parents=True)  # a namespace package: no __init__.py
    (tmp_path / "single.py").write_text("")
    (tmp_path / "_native.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
    (tmp_path / "weird-1.0.dist-info").mkdir()
    (tmp_path / "weird-1.0.dist-info" / "top_level.txt").write_text("weird_alias\n")
    (tmp_path / "src_mod.py").write_text("")
    names = import_closure.installed_top_levels(tmp_path, {"src_mod"})
    assert names == {"pkg", "nspkg", "single", "_native", "weird_alias"}


def test_impact_names_functions_per_changed_file() -> None:
    src = LAYOUT_BACKEND / "src"
    result = import_closure.impact(
        src, HANDLERS, ["contexts/provider/registry.py", "settings.py", "contexts/provider/models/license.py"]
    )
    assert result == {
        "contexts/provider/registry.py": {"init": [], "lazy": ["CreateGoal"]},
        "settings.py": {"init": ["Auth"], "lazy": []},
        "contexts/provider/models/license.py": {"init": ["Auth", "CreateGoal"], "lazy": []},
    }


def test_handler_module_missing_from_source_stops_synth(layout_backend: Path, shared_cache: Path) -> None:
    spec = layout_spec(layout_backend, shared_cache, handlers=(("Auth", "handlers.login.main"),))
    with pytest.raises(BundlingError, match=r"handler handlers.login.main: no module 'handlers.login'"):
        build_bundle(spec)


# ---------------------------------------------------------------------------------------------------------
# Source distributions


def test_built_wheels_and_handlers_are_part_of_the_hash(layout_backend: Path, shared_cache: Path) -> None:
    spec = layout_spec(layout_backend, shared_cache)
    base = input_hash(spec, "uv 0.13.9")
    assert input_hash(spec, "uv 0.13.9", (("docopt-0.6.2-py2.py3-none-any.whl", "ab"),)) != base
    assert input_hash(spec, "uv 0.13.9", (("docopt-0.6.2-py2.py3-none-any.whl", "cd"),)) != input_hash(
        spec, "uv 0.13.9", (("docopt-0.6.2-py2.py3-none-any.whl", "ab"),)
    )
    assert input_hash(replace(spec, handlers=HANDLERS[:1]), "uv 0.13.9") != base


def test_cached_wheelhouse_does_no_work(
    layout_built: BundleResult, layout_backend: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*_a: object, **_k: object) -> None:
        raise AssertionError("the wheelhouse was prepared again with unchanged requirements")

    monkeypatch.setattr(sdist, "build_pure_wheel", boom)
    monkeypatch.setattr(subprocess, "run", boom)
    tool = layout_built.tool
    spec = layout_spec(layout_backend, REPO_ROOT / ".cache")
    wheelhouse = install.prepare_wheelhouse(spec, tool, ["uv"])
    assert [name for name, _sha in wheelhouse.wheels] == ["docopt-0.6.2-py2.py3-none-any.whl"]
    assert (wheelhouse.directory / wheelhouse.wheels[0][0]).is_file()


def _native_sdist(folder: Path) -> Path:
    """A tiny sdist with a C extension (published nowhere), as `setup.py sdist` would pack it."""
    name = "credmate_native_fixture-0.1"
    files = {
        "PKG-INFO": "Metadata-Version: 2.1\nName: credmate-native-fixture\nVersion: 0.1\n",
        "setup.py": textwrap.dedent(
            """
            from setuptools import Extension, setup
            setup(
                name="credmate-native-fixture",
                version="0.1",
                ext_modules=[Extension("credmate_native_fixture", ["native.c"])],
            )
            """
        ),
        "native.c": textwrap.dedent(
            """
            #include <Python.h>
            static struct PyModuleDef mod = {
                PyModuleDef_HEAD_INIT, "credmate_native_fixture", NULL, -1, NULL};
            PyMODINIT_FUNC PyInit_credmate_native_fixture(void) { return PyModule_Create(&mod); }
            """
        ),
    }
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / f"{name}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for relative, text in files.items():
            path = folder / "src" / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            tar.add(path, arcname=f"{name}/{relative}")
    return archive


def test_sdist_that_builds_native_code_stops_naming_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not shutil.which("gcc"):
        pytest.skip("gcc is needed to build the C extension")
    index = tmp_path / "index"
    _native_sdist(index)
    # pip download finds the sdist in the local folder (its build backend comes from the index)
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    _tool, command = installer_identity(
        BundleSpec(source_dir=tmp_path, requirements=tmp_path / "r", cache_dir=tmp_path)
    )
    uv = command[0] if command[0].endswith("uv") else None
    with pytest.raises(sdist.SdistError) as caught:
        sdist.build_pure_wheel("credmate-native-fixture", "==0.1", tmp_path / "out", use_uv=uv)
    assert caught.value.package == "credmate-native-fixture"
    assert re.search(
        r"builds credmate_native_fixture-0\.1-cp3\d+-cp3\d+-linux_\w+\.whl, native code for this host",
        caught.value.detail,
    ), caught.value.detail
    assert not (tmp_path / "out").exists(), "nothing enters the wheelhouse"
    # AND the same process does not compile it again (a synth bundles both environments from one lock): with
    # the sdist gone from the index, the verdict still comes back
    for archive in index.glob("*.tar.gz"):
        archive.unlink()
    with pytest.raises(sdist.SdistError) as again:
        sdist.build_pure_wheel("credmate-native-fixture", "==0.1", tmp_path / "out", use_uv=uv)
    assert again.value is caught.value


def test_no_wheel_requirement_parsing() -> None:
    assert sdist.no_wheel_requirement(
        "Because docopt==0.6.2 has no usable wheels and you require docopt==0.6.2"
    ) == ("docopt", "==0.6.2")
    assert sdist.no_wheel_requirement(
        "Because docopt>=0.3.0 has no usable wheels and notifications-python-client==10.0.1 depends on"
    ) == ("docopt", ">=0.3.0")
    assert sdist.no_wheel_requirement("ERROR: No matching distribution found for docopt==0.6.2") == (
        "docopt",
        "==0.6.2",
    )
    assert sdist.no_wheel_requirement("error: network unreachable") is None
