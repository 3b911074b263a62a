"""The source read as the target runs it (stacks/bundling/import_reader.py): version
and platform branches judged against the target, find_spec guards, literal dynamic imports, and what is not an
export (TYPE_CHECKING, `__all__`, `del`); each case in both directions where both exist."""

from __future__ import annotations

import ast
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from stacks.bundling import import_reader
from stacks.bundling.spec import BundlingError
from tests.test_import_closure import _analyze, _problems

TOML = """
    import sys
    if {test}:
        import tomllib as toml
    else:
        import tomli as toml
    def main(e, c): pass
"""


@pytest.mark.parametrize(
    "test",
    [
        "sys.version_info >= (3, 11)",
        "sys.version_info[:2] >= (3, 11)",
        "(3, 11) <= sys.version_info",
        "not sys.version_info < (3, 11)",
        "sys.version_info.minor >= 11",
        "sys.version_info[1] > 10 and sys.version_info[0] == 3",
    ],
)
def test_version_branch_is_judged_against_the_target_python(tmp_path: Path, test: str) -> None:
    app = {"app.py": TOML.format(test=test)}
    # on 3.11 the tomli branch never runs: no false alarm for the missing tomli
    assert _problems(_analyze(app, tmp_path / "311", python_version="3.11")) == []
    # on 3.10 it does, and tomli is missing: synth stops there
    closure = _analyze(app, tmp_path / "310", python_version="3.10")
    assert _problems(closure) == [("app.py:6", "No module named 'tomli'")]
    assert "tomli is not in requirements.txt: add it there (pinned)" in str(closure.problems[0])


def test_version_check_on_the_unknown_micro_version_keeps_both_branches(tmp_path: Path) -> None:
    # the runtime's micro version moves with Lambda's patches: a check on it is not judged
    app = {"app.py": TOML.format(test="sys.version_info >= (3, 11, 4)")}
    assert _problems(_analyze(app, tmp_path, python_version="3.11")) == [
        ("app.py:6", "No module named 'tomli'")
    ]


@pytest.mark.parametrize(
    ("expression", "on_311", "on_310"),
    [
        ("sys.version_info >= (3, 11)", True, False),
        ("sys.version_info < (3, 11)", False, True),
        ("sys.version_info == (3, 11)", False, False),  # the full tuple is longer: never equal
        ("sys.version_info[:2] == (3, 11)", True, False),
        ("sys.version_info > (3,)", True, True),
        ("sys.version_info >= (3, 12, 0)", False, False),
        ("sys.version_info >= (3, 11, 2)", None, False),
        ("sys.version_info.major == 3", True, True),
        ("sys.platform == 'win32'", False, False),
        ("sys.platform != 'darwin'", True, True),
        ("sys.platform.startswith('linux')", True, True),
        ("sys.platform.startswith(('win', 'cygwin'))", False, False),
        ("sys.platform in ('win32', 'cygwin')", False, False),
        ("os.name == 'nt'", False, False),
        ("sys.platform == 'linux' and FLAG", None, None),
        ("sys.platform == 'win32' and FLAG", False, False),
        ("sys.platform == 'win32' or FLAG", None, None),
        ("version_info >= (3, 11)", None, None),  # another spelling: a runtime condition
        ("FLAG", None, None),
    ],
)
def test_static_truth_of_version_and_platform_tests(expression: str, on_311: bool, on_310: bool) -> None:
    test = ast.parse(expression, mode="eval").body
    assert import_reader.static_truth(test, import_reader.Target.for_python("3.11")) is on_311
    assert import_reader.static_truth(test, import_reader.Target.for_python("3.10")) is on_310


def test_platform_branches_lambda_never_takes_are_dead(tmp_path: Path) -> None:
    app = """
        import os, sys
        if sys.platform == "win32":
            import win32api
        elif sys.platform.startswith("linux"):
            import linux_only_helper
        if os.name == "nt":
            import winreg_helper
        def main(e, c):
            if sys.platform != "darwin":
                import fcntl_helper
    """
    assert _problems(_analyze({"app.py": app}, tmp_path)) == [
        ("app.py:6", "No module named 'linux_only_helper'"),
        ("app.py:11", "No module named 'fcntl_helper'"),
    ]


def test_name_bound_only_in_a_branch_the_target_never_takes_is_not_exported(tmp_path: Path) -> None:
    files = {
        "compat.py": """
            import sys
            if sys.version_info < (3, 11):
                LEGACY = True
            else:
                MODERN = True
        """,
        "app.py": "def main(e, c):\n    from compat import LEGACY, MODERN\n",
    }
    (problem,) = _analyze(files, tmp_path / "311", python_version="3.11").problems
    assert (problem.site.where, problem.message) == ("app.py:2", "cannot import name 'LEGACY' from 'compat'")
    assert "compat.py:3 binds LEGACY only in a branch python3.11 on linux never takes" in problem.hint
    (problem,) = _analyze(files, tmp_path / "310", python_version="3.10").problems
    assert problem.message == "cannot import name 'MODERN' from 'compat'"


@pytest.mark.parametrize(
    "failing",
    [
        "try:\n    import ujson\nexcept ImportError:\n    raise\n",
        "try:\n    import ujson\nexcept ImportError as exc:\n    log = 1\n"
        "    raise RuntimeError('pip install ujson') from exc\n",
        "try:\n    import ujson\nexcept ModuleNotFoundError:\n    raise SystemExit(1)\nexcept Exception:\n"
        "    ujson = None\n",
        "def f():\n    try:\n        import ujson\n    except (ImportError, ValueError):\n        raise\n",
    ],
    ids=["bare-raise", "raise-new-error", "first-matching-handler-raises", "lazy-tuple"],
)
def test_except_import_error_that_raises_is_not_a_guard(tmp_path: Path, failing: str) -> None:
    (problem,) = _analyze({"app.py": failing + "def main(e, c): pass\n"}, tmp_path).problems
    import_line = failing[: failing.index("import ujson")].count("\n") + 1
    assert (problem.site.where, problem.message) == (f"app.py:{import_line}", "No module named 'ujson'")
    assert "ujson is not in requirements.txt: add it there (pinned)" in problem.hint


def test_find_spec_guards_only_the_module_it_finds(tmp_path: Path) -> None:
    app = """
        from importlib.util import find_spec
        if find_spec("ujson"):
            import ujson
            import orjson
        def main(e, c): pass
    """
    assert _problems(_analyze({"app.py": app}, tmp_path)) == [("app.py:5", "No module named 'orjson'")]


def test_literal_dynamic_imports_are_resolved_like_imports(tmp_path: Path) -> None:
    files = {
        "plugins/__init__.py": "",
        "plugins/email.py": "import docopt\n",
        "plugins/sms.py": "",
        "app.py": textwrap.dedent(
            """
            import importlib
            from importlib import import_module
            importlib.import_module("plugins.email")
            def main(e, c):
                import_module(".sms", "plugins")
                __import__("docopt")
                importlib.import_module(e["plugin"])  # computed: left to verification and the probe
            """
        ),
    }
    closure = _analyze(files, tmp_path, installed={"docopt"})
    assert closure.problems == []
    assert "plugins/email.py" in closure.init_files["Fn"]
    assert closure.lazy_files["Fn"] == ["plugins/sms.py"]
    # docopt runs at init through plugins.email (proven by importing the handler); the lazy __import__ of it
    # in main is recorded for verification and the probe all the same
    assert [(d.module, d.where) for d in closure.lazy_dependencies["Fn"]] == [("docopt", "app.py:7")]
    # the other way round: nothing installed, and a source module that is not there
    files["app.py"] += "    importlib.import_module('plugins.fax')\n"
    closure = _analyze(files, tmp_path / "missing", installed=set())
    assert [(p.site.where, p.message, p.site.lazy) for p in closure.problems] == [
        ("app.py:7", "No module named 'docopt'", True),
        ("app.py:9", "No module named 'plugins.fax'", True),
        ("plugins/email.py:1", "No module named 'docopt'", False),
    ]
    assert "plugins/fax(.py) does not exist" in closure.problems[1].hint


def test_relative_dynamic_imports_resolve_from_their_package(tmp_path: Path) -> None:
    files = {
        "pkg/__init__.py": "",
        "pkg/a.py": "",
        "pkg/sub/__init__.py": "from importlib import import_module\n"
        "def load():\n"
        "    import_module('..a', __package__)\n"
        "    import_module('.b', __name__)\n"
        "    import_module('...beyond', 'pkg.sub')\n"
        "    __import__('c', globals(), None, [], 1)\n",
        "pkg/sub/b.py": "",
        "app.py": "import pkg.sub\ndef main(e, c): pass\n",
    }
    closure = _analyze(files, tmp_path)
    assert _problems(closure) == [
        ("pkg/sub/__init__.py:5", "relative import beyond the top-level package"),
        ("pkg/sub/__init__.py:6", "No module named 'pkg.sub.c'"),
    ]
    assert closure.lazy_files["Fn"] == ["pkg/a.py", "pkg/sub/b.py"]


def test_dynamic_import_at_module_level_runs_at_init(tmp_path: Path) -> None:
    files = {
        "app.py": "import importlib\nimportlib.import_module('ujson')\n__import__('orjson.x')\n"
        "def main(e, c): pass\n"
    }
    closure = _analyze(files, tmp_path)
    assert [(p.site.where, p.message, p.site.lazy) for p in closure.problems] == [
        ("app.py:2", "No module named 'ujson'", False),
        ("app.py:3", "No module named 'orjson.x'", False),
    ]


def test_type_checking_only_name_is_not_an_export(tmp_path: Path) -> None:
    shared = """
        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            from decimal import Decimal
            Money = Decimal
        else:
            Money = float
    """
    ok = _analyze(
        {"shared.py": shared, "app.py": "def main(e, c):\n    from shared import Money\n"}, tmp_path
    )
    assert ok.problems == []
    files = {"shared.py": shared, "app.py": "def main(e, c):\n    from shared import Decimal\n"}
    (problem,) = _analyze(files, tmp_path / "tc").problems
    assert (problem.site.where, problem.message) == ("app.py:2", "cannot import name 'Decimal' from 'shared'")
    assert "binds Decimal only under `if TYPE_CHECKING:`, which never runs" in problem.hint


@pytest.mark.parametrize(
    ("impl_all", "exported", "hidden", "why"),
    [
        ("__all__ = ['Public']\n", "Public", "Hidden", "Hidden is not in its `__all__`"),
        ("__all__ = ('Public',)\n__all__ += ['Hidden']\n", "Hidden", "_private", "not in its `__all__`"),
        ("__all__: list[str] = []\n__all__.append('Hidden')\n", "Hidden", "Public", "not in its `__all__`"),
        ("__all__ = []\n__all__.extend(['Public'])\n", "Public", "Hidden", "not in its `__all__`"),
        ("", "Hidden", "_private", "a name starting with '_' is not star-imported"),
    ],
)
def test_names_a_star_import_does_not_bind_are_not_exported(
    tmp_path: Path, impl_all: str, exported: str, hidden: str, why: str
) -> None:
    files = {
        "shared/__init__.py": "from shared.impl import *\n",
        "shared/impl.py": impl_all + "Public = Hidden = _private = 1\n",
        "app.py": f"def main(e, c):\n    from shared import {exported}\n",
    }
    assert _analyze(files, tmp_path / "ok").problems == []
    files["app.py"] = f"def main(e, c):\n    from shared import {hidden}\n"
    (problem,) = _analyze(files, tmp_path / "hidden").problems
    assert problem.message == f"cannot import name '{hidden}' from 'shared'"
    assert (
        f"shared/impl.py defines {hidden}, but `from shared.impl import *` does not bind it" in problem.hint
    )
    assert (
        why in problem.hint and "add it to shared.impl.__all__, or import it from shared.impl" in problem.hint
    )
    # a name imported from the module itself is not filtered by its __all__
    files["app.py"] = f"def main(e, c):\n    from shared.impl import {hidden}\n"
    assert _analyze(files, tmp_path / "direct").problems == []


def test_unread_dunder_all_accepts_any_name_through_the_star(tmp_path: Path) -> None:
    files = {
        "shared/__init__.py": "from shared.impl import *\n",
        "shared/impl.py": "import json\n__all__ = [*json.__all__, 'Public']\nPublic = Hidden = 1\n",
        "app.py": "def main(e, c):\n    from shared import Hidden\n",
    }
    assert _analyze(files, tmp_path).problems == []


def test_deleted_name_is_not_present(tmp_path: Path) -> None:
    shared = """
        import os
        GONE = KEPT = AGAIN = 1
        del GONE, os
        if os_flag := False:
            del KEPT  # may not run: KEPT stays
        del AGAIN
        AGAIN = 2
    """
    ok = "def main(e, c):\n    from shared import KEPT, AGAIN\n"
    assert _analyze({"shared.py": shared, "app.py": ok}, tmp_path / "ok").problems == []
    files = {"shared.py": shared, "app.py": "def main(e, c):\n    from shared import GONE\n"}
    (problem,) = _analyze(files, tmp_path / "gone").problems
    assert (problem.site.where, problem.message) == ("app.py:2", "cannot import name 'GONE' from 'shared'")
    assert problem.hint == "shared.py:4 deletes GONE (`del`): keep it there or update the importers"


# A generated module (a lookup table) can nest deeper than the default recursion limit lets a visitor go.
DEEP = "import json\nTABLE = 1" + " + 1" * 1500 + "\nfrom os import path\n"


@pytest.fixture
def default_recursion_limit() -> Iterator[None]:
    """The interpreter's default limit, whatever an earlier test in this worker raised it to."""
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    yield
    sys.setrecursionlimit(before)


@pytest.mark.usefixtures("default_recursion_limit")
def test_a_deeply_nested_valid_module_is_read_once_whole(tmp_path: Path) -> None:
    # GIVEN a module Python compiles whose one expression nests 1,500 levels deep
    compile(DEEP, "table.py", "exec")
    (tmp_path / "table.py").write_text(DEEP)
    # WHEN it is read, THEN its imports on both sides of the expression are found, each once
    info = import_reader.read_source(tmp_path, [("table.py", tmp_path / "table.py")])["table"]
    assert [site.module for site in info.sites] == ["json", "os"]
    assert {"json", "TABLE", "path"} <= info.defined


@pytest.mark.usefixtures("default_recursion_limit")
def test_a_module_deeper_than_the_raised_limit_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(import_reader, "DEEP_RECURSION_LIMIT", 1200)
    (tmp_path / "table.py").write_text(DEEP)
    with pytest.raises(BundlingError, match=r"^table\.py: nested too deeply for the static import check"):
        import_reader.read_source(tmp_path, [("table.py", tmp_path / "table.py")])
