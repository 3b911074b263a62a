"""Private package indexes (stacks/bundling/indexes.py): the index settings uv and pip read from the
environment, their configuration and ~/.netrc reach the Lambda-platform install, the sdist builds and
`make lock`; the password never reaches the asset hash, cdk.out, the caches, logs or errors. Against a real
index on loopback that requires it (tests/private_index.py). And a failed sdist build is never cached."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import threading
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote

import pytest

from stacks.bundling import install, lock
from stacks.bundling.build import build_bundle
from stacks.bundling.indexes import installer_environment, redact, run_bounded
from stacks.bundling.input_hash import input_hash, installer_identity
from stacks.bundling.spec import BundleSpec, BundlingError, MissingWheelError
from tests.conftest import process_ended
from tests.private_index import PrivateIndex, write_flaky_sdist, write_wheel

REPO_ROOT = Path(__file__).resolve().parents[1]
USER = "deploy"
HANDLER = """\
from credmate_private_lib import GREETING
from mangum import Mangum  # public, from the public index beside the private one


def lambda_handler(event, context):
    return {"statusCode": 200, "body": GREETING, "adapter": Mangum.__name__}
"""


@pytest.fixture
def password() -> str:
    return f"pw-{uuid.uuid4().hex}"


@pytest.fixture
def index(tmp_path: Path, password: str) -> Iterator[PrivateIndex]:
    """The private index: credmate-private-lib 1.0 (a wheel) and credmate-flaky-sdist 0.1 (an sdist only)."""
    files = tmp_path / "index-files"
    write_wheel(
        files,
        "credmate-private-lib",
        "1.0",
        {"credmate_private_lib/__init__.py": 'GREETING = "hello from the private index"\n'},
    )
    write_flaky_sdist(files, tmp_path / "fail-once", tmp_path / "builds.log")
    with PrivateIndex(files, USER, password) as served:
        yield served
    # Stopped with the test: neither the server's thread nor any request's outlives it
    left = [t.name for t in threading.enumerate() if t.name == "private-index" or "process_request" in t.name]
    assert left == [], left


@pytest.fixture
def backend(tmp_path: Path) -> Path:
    folder = tmp_path / "backend"
    (folder / "src").mkdir(parents=True)
    (folder / "src" / "handler.py").write_text(HANDLER)
    (folder / "requirements.txt").write_text("credmate-private-lib==1.0\nmangum==0.19.0\n")
    return folder


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No index variable or netrc of this machine's in the way (pip.conf stays: the design must live with
    whatever the machine has)."""
    for name in list(os.environ):
        if name.startswith(("UV_INDEX", "UV_DEFAULT_INDEX", "UV_EXTRA_INDEX")) or name in (
            "PIP_INDEX_URL",
            "PIP_EXTRA_INDEX_URL",
            "UV_NO_CONFIG",
        ):
            monkeypatch.delenv(name)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    return monkeypatch


def spec_for(backend: Path, cache: Path, **changes: object) -> BundleSpec:
    spec = BundleSpec(
        source_dir=backend / "src",
        requirements=backend / "requirements.txt",
        cache_dir=cache,
        handlers=(("Private", "handler.lambda_handler"),),
    )
    return replace(spec, **changes)  # type: ignore[arg-type]


def secret_forms(password: str) -> list[bytes]:
    """The password as it could be written: plain, percent-encoded, and inside a basic-auth header."""
    basic = base64.b64encode(f"{USER}:{password}".encode())
    return [password.encode(), quote(password, safe="").encode(), basic]


def leaks(root: Path, password: str) -> list[str]:
    """Every file under `root` (and every member of its zips) holding the password in any form."""
    found = []
    forms = secret_forms(password)
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        blobs = [(str(path), path.read_bytes())]
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                blobs += [(f"{path}!{n}", archive.read(n)) for n in archive.namelist()]
        found += [where for where, data in blobs if any(form in data for form in forms)]
    return found


def _configure(how: str, env: pytest.MonkeyPatch, index: PrivateIndex, backend: Path, tmp_path: Path) -> None:
    """Point the installers at the private index the way a user of `how` would."""
    if how == "pip variables, credentials in the URL":
        env.setenv("PIP_EXTRA_INDEX_URL", index.url_with_credentials)
    elif how == "backend uv.toml, named index credentials":
        (backend / "uv.toml").write_text(f'[[index]]\nname = "private"\nurl = "{index.url}"\n')
        env.setenv("UV_INDEX_PRIVATE_USERNAME", USER)
        env.setenv("UV_INDEX_PRIVATE_PASSWORD", index.password)
    elif how == "uv variable, credentials in netrc":
        netrc = tmp_path / "netrc"
        netrc.write_text(f"machine 127.0.0.1 login {USER} password {index.password}\n")
        netrc.chmod(0o600)
        env.setenv("NETRC", str(netrc))
        env.setenv("UV_EXTRA_INDEX_URL", index.url)
    elif how == "uv named index variables, pip installer":
        env.setenv("UV_INDEX", f"private={index.url}")
        env.setenv("UV_INDEX_PRIVATE_USERNAME", USER)
        env.setenv("UV_INDEX_PRIVATE_PASSWORD", index.password)
    else:
        raise AssertionError(how)


@pytest.mark.parametrize(
    "how",
    [
        "pip variables, credentials in the URL",
        "backend uv.toml, named index credentials",
        "uv variable, credentials in netrc",
        "uv named index variables, pip installer",
    ],
)
def test_a_password_protected_index_serves_a_private_package_into_the_bundle(
    how: str,
    index: PrivateIndex,
    backend: Path,
    clean_env: pytest.MonkeyPatch,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a private package on a password-protected index, configured as a user of `how` would
    _configure(how, clean_env, index, backend, tmp_path)
    spec = spec_for(backend, tmp_path / "cache", installer="pip" if "pip installer" in how else "auto")
    logged: list[str] = []
    # WHEN the bundle is built
    result = build_bundle(spec, log=logged.append)
    # THEN the private module is in it, from the private index, beside the public packages
    assert index.served("credmate_private_lib-1.0-py3-none-any.whl"), index.requests
    with zipfile.ZipFile(result.zip_path) as archive:
        names = archive.namelist()
    assert "credmate_private_lib/__init__.py" in names and "mangum/__init__.py" in names
    # AND the password is nowhere: not in the cache (bundles, layers, meta files, uv's own cache), the
    # logs or the output
    out, err = capfd.readouterr()
    assert leaks(tmp_path / "cache", index.password) == []
    assert not any(form.decode() in "\n".join([out, err, *logged]) for form in secret_forms(index.password))
    # AND no index setting is an input: another password (a rotation) gives the same asset
    clean_env.setenv("UV_INDEX_PRIVATE_PASSWORD", "rotated-password")
    clean_env.setenv("PIP_EXTRA_INDEX_URL", index.url_for(USER, "rotated-password"))
    assert input_hash(spec, result.tool) == result.asset_hash


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_a_wrong_password_stops_naming_the_index_without_the_password(
    installer: str, index: PrivateIndex, backend: Path, clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    wrong = f"wrong-{uuid.uuid4().hex}"
    clean_env.setenv("PIP_EXTRA_INDEX_URL", index.url_for(USER, wrong))
    spec = spec_for(backend, tmp_path / "cache", installer=installer)
    with pytest.raises(BundlingError) as caught:
        build_bundle(spec)
    # Not "no wheel for the target" (which would send it to Docker bundling): the index refused
    assert not isinstance(caught.value, MissingWheelError)
    message = str(caught.value)
    assert f"the package index {index.host} refused the credentials" in message, message
    assert "credmate-private-lib" in message and "401" in message, message
    assert wrong not in message and index.password not in message
    assert leaks(tmp_path / "cache", wrong) == []
    # Nothing was cached from the failure: the same synth with the right password builds
    clean_env.setenv("PIP_EXTRA_INDEX_URL", index.url_with_credentials)
    result = build_bundle(spec)
    assert (result.directory.parent / "meta.json").is_file()


def test_a_failed_sdist_build_is_never_cached_and_the_next_synth_builds_it(
    index: PrivateIndex, backend: Path, clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # GIVEN a requirement published only as an sdist, on the private index (named, as uv users set it:
    # pip downloads the sdist, with the credentials of the uv variables), whose first build fails
    (backend / "requirements.txt").write_text("credmate-flaky-sdist==0.1\n")
    (tmp_path / "fail-once").write_text("")
    clean_env.setenv("UV_INDEX", f"private={index.url}")
    clean_env.setenv("UV_INDEX_PRIVATE_USERNAME", USER)
    clean_env.setenv("UV_INDEX_PRIVATE_PASSWORD", index.password)
    spec = spec_for(backend, tmp_path / "cache")
    tool, command = installer_identity(spec)
    builds = tmp_path / "builds.log"
    # WHEN the first synth's build fails
    with pytest.raises(MissingWheelError) as caught:
        install.prepare_wheelhouse(spec, tool, command)
    assert caught.value.package == "credmate-flaky-sdist"
    message = str(caught.value)
    assert "did not build into a wheel" in message and "this build fails once" in message
    assert index.password not in message
    assert builds.read_text().count("build") == 1
    # THEN nothing was cached: no wheelhouse manifest records the failure
    assert not list((tmp_path / "cache" / "wheelhouse").glob("*/manifest.json"))
    # AND the next synth builds it, and the one after finds it cached
    wheelhouse = install.prepare_wheelhouse(spec, tool, command)
    assert [name for name, _sha in wheelhouse.wheels] == ["credmate_flaky_sdist-0.1-py3-none-any.whl"]
    again = install.prepare_wheelhouse(spec, tool, command)
    assert again.wheels == wheelhouse.wheels and builds.read_text().count("build") == 2
    assert index.served("credmate_flaky_sdist-0.1.tar.gz")
    assert leaks(tmp_path / "cache", index.password) == []


def test_an_unreachable_index_leaves_no_wheelhouse_that_would_hide_the_sdist(
    index: PrivateIndex, backend: Path, clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # GIVEN an sdist-only requirement and, first, an index that does not answer
    (backend / "requirements.txt").write_text("credmate-flaky-sdist==0.1\n")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    clean_env.setenv("UV_HTTP_RETRIES", "0")
    clean_env.setenv(
        "PIP_EXTRA_INDEX_URL", index.url_with_credentials.replace(index.host, f"127.0.0.1:{closed}")
    )
    spec = spec_for(backend, tmp_path / "cache")
    tool, command = installer_identity(spec)
    # WHEN the dry run cannot reach it, no wheel is built and nothing is cached (not even "none needed")
    assert install.prepare_wheelhouse(spec, tool, command).wheels == ()
    assert not list((tmp_path / "cache" / "wheelhouse").glob("*/manifest.json"))
    # THEN once the index answers, the next synth builds the sdist
    clean_env.setenv("PIP_EXTRA_INDEX_URL", index.url_with_credentials)
    wheelhouse = install.prepare_wheelhouse(spec, tool, command)
    assert [name for name, _sha in wheelhouse.wheels] == ["credmate_flaky_sdist-0.1-py3-none-any.whl"]


def test_make_lock_resolves_from_the_private_index_and_writes_no_index_url(
    index: PrivateIndex, backend: Path, clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # GIVEN the private index in PIP_EXTRA_INDEX_URL, and a uv.toml asking uv to write index URLs into
    # what it compiles
    (backend / "requirements.txt").write_text("credmate-private-lib==1.0\n")
    (backend / "uv.toml").write_text("[pip]\nemit-index-url = true\nemit-index-annotation = true\n")
    clean_env.setenv("PIP_EXTRA_INDEX_URL", index.url_with_credentials)
    written = lock.compile_lock(backend / "requirements.txt", [("3.11", "x86_64")], cache_dir=tmp_path / "uv")
    text = written.read_text()
    assert "credmate-private-lib==1.0" in text and "--hash=sha256:" in text
    assert index.host not in text and "--index-url" not in text and "--extra-index-url" not in text
    assert leaks(tmp_path / "uv", index.password) == []
    # A wrong password: the error names the index, never the password
    wrong = f"wrong-{uuid.uuid4().hex}"
    clean_env.setenv("PIP_EXTRA_INDEX_URL", index.url_for(USER, wrong))
    (backend / "requirements.txt").write_text("credmate-private-lib==1.0\n# changed\n")
    with pytest.raises(RuntimeError) as caught:
        lock.compile_lock(backend / "requirements.txt", [("3.11", "x86_64")], cache_dir=tmp_path / "uv2")
    assert f"the package index {index.host} refused the credentials" in str(caught.value)
    assert wrong not in str(caught.value)


_SYNTH = """
import sys
sys.path.insert(0, {repo!r})
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_lambda as lambda_

from stacks.bundling.spec import BundleSpec, HandlerCheck
from stacks.constructs import lambda_bundle

app = cdk.App(outdir={outdir!r})
stack = cdk.Stack(app, "PrivateIndex")
backend = Path({backend!r})
spec = BundleSpec(
    source_dir=backend / "src",
    requirements=backend / "requirements.txt",
    cache_dir=Path({cache!r}),
    handlers=(("Private", "handler.lambda_handler"),),
)
check = HandlerCheck(function="Private", handler="handler.lambda_handler")
made = lambda_bundle.verified_bundle(spec, checks=[check])
lambda_.Function(
    stack, "Private", runtime=lambda_.Runtime.PYTHON_3_11, handler="handler.lambda_handler", code=made.code
)
stack.template_options.metadata = {{"CredmateBundles": [{{"verified": made.verified}}]}}
app.synth()
lambda_bundle.join_verifications()
print("synth done")
"""


def test_a_synth_with_the_private_index_leaves_the_password_nowhere(
    index: PrivateIndex, backend: Path, clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    outdir, cache = tmp_path / "cdk.out", tmp_path / "cache"
    script = tmp_path / "synth.py"
    script.write_text(
        _SYNTH.format(repo=str(REPO_ROOT), outdir=str(outdir), backend=str(backend), cache=str(cache))
    )
    env = {**os.environ, "PIP_EXTRA_INDEX_URL": index.url_with_credentials}
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=600, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "synth done" in proc.stdout
    template = json.loads((outdir / "PrivateIndex.template.json").read_text())
    assert template["Metadata"]["CredmateBundles"] == [{"verified": True}]
    assert index.served("credmate_private_lib-1.0-py3-none-any.whl")
    (asset,) = outdir.glob("asset.*.zip")  # the bundle as cdk deploy uploads it
    with zipfile.ZipFile(asset) as archive:
        assert "credmate_private_lib/__init__.py" in archive.namelist()
    assert leaks(outdir, index.password) == [] and leaks(cache, index.password) == []
    assert not any(form.decode() in proc.stdout + proc.stderr for form in secret_forms(index.password))


# ---------------------------------------------------------------------------------------------------------
# The environment and the redaction, alone


def test_redact_hides_url_credentials_and_secret_values() -> None:
    env = {
        "UV_INDEX_PRIVATE_PASSWORD": "hunter2-long",
        "PIP_EXTRA_INDEX_URL": "https://__token__:tok%2Fen-value@pypi.example.com/simple",
        "SHORT_TOKEN": "ab",
        "HOME": "/root",
    }
    text = (
        "Failed to fetch `https://user:hunter2-long@pypi.example.com/simple/x/` (401)\n"
        "token tok/en-value echoed; password hunter2-long; git+ssh://git@github.com/o/r; "
        "http://127.0.0.1:8080/simple/ has no credentials; ab stays"
    )
    assert redact(text, env) == (
        "Failed to fetch `https://***@pypi.example.com/simple/x/` (401)\n"
        "token *** echoed; password ***; git+ssh://***@github.com/o/r; "
        "http://127.0.0.1:8080/simple/ has no credentials; ab stays"
    )


def test_each_tool_gets_the_others_index_variables_when_its_own_are_unset(tmp_path: Path) -> None:
    pip_user = {
        "PIP_INDEX_URL": "https://mirror/simple",
        "PIP_EXTRA_INDEX_URL": "https://a/simple https://b/s",
    }
    uv = installer_environment("uv", pip_user, uv_cache=tmp_path)
    assert uv["UV_DEFAULT_INDEX"] == "https://mirror/simple"
    assert uv["UV_EXTRA_INDEX_URL"] == "https://a/simple https://b/s"
    # uv's configuration files are read (they hold uv users' index settings) unless the user said not to
    assert uv["UV_CACHE_DIR"] == str(tmp_path) and "UV_NO_CONFIG" not in uv
    # uv's own variables win
    own = installer_environment("uv", {**pip_user, "UV_INDEX": "corp=https://corp/simple"})
    assert "UV_EXTRA_INDEX_URL" not in own and own["UV_DEFAULT_INDEX"] == "https://mirror/simple"
    uv_user = {
        "UV_DEFAULT_INDEX": "https://mirror/simple",
        "UV_INDEX": "corp-eu=https://corp/simple https://plain/simple",
        "UV_INDEX_CORP_EU_USERNAME": "me",
        "UV_INDEX_CORP_EU_PASSWORD": "p@ss",
    }
    pip = installer_environment("pip", uv_user)
    assert pip["PIP_INDEX_URL"] == "https://mirror/simple"
    assert pip["PIP_EXTRA_INDEX_URL"] == "https://me:p%40ss@corp/simple https://plain/simple"
    assert installer_environment("pip", {**uv_user, "PIP_EXTRA_INDEX_URL": "x"})["PIP_EXTRA_INDEX_URL"] == "x"


def test_the_index_settings_never_enter_the_asset_hash(
    backend: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = spec_for(backend, tmp_path)
    before = input_hash(spec, "uv 0.13.9")
    monkeypatch.setenv("UV_INDEX", "corp=https://corp.example/simple")
    monkeypatch.setenv("UV_INDEX_CORP_PASSWORD", "rotated")
    monkeypatch.setenv("PIP_INDEX_URL", "https://me:secret@mirror.example/simple")
    assert input_hash(spec, "uv 0.13.9") == before


def test_an_installer_step_that_hangs_is_killed_with_what_it_started(tmp_path: Path) -> None:
    # GIVEN a step that starts a process of its own (as uv starts a build backend) which never returns
    pid_file = tmp_path / "child.pid"
    child = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    parent = (
        f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {child!r}]); time.sleep(120)"
    )
    # WHEN it runs bounded, THEN it is reported as unfinished and nothing it started lives on
    status, output = run_bounded([sys.executable, "-c", parent], os.environ, 3)
    assert status is None and output == "it did not finish within 3 s"
    assert process_ended(pid_file), "the child lives on"


def test_an_installer_step_reports_its_status_and_redacted_output() -> None:
    script = "import sys; print('fetching https://user:s3cret@index.example/simple'); sys.exit(3)"
    status, output = run_bounded([sys.executable, "-c", script], os.environ, 30)
    assert status == 3 and "s3cret" not in output and "index.example" in output
