"""Package indexes: the settings uv and pip are run with, and the redaction of credentials from what they say.

Every run of an installer for the bundler (the Lambda-platform install, its dry runs, the sdist download and
build, `make lock`) gets its environment from `installer_environment`, so a private index configured for
one is configured for all of them:

* uv reads its own variables (UV_DEFAULT_INDEX, UV_INDEX, UV_INDEX_URL, UV_EXTRA_INDEX_URL,
  UV_INDEX_<NAME>_USERNAME/PASSWORD, UV_KEYRING_PROVIDER, ...), ~/.netrc (or NETRC), and its configuration
  files: the user's and the system's uv.toml, and the project's (`uv.toml` or `pyproject.toml [tool.uv]`)
  found from the backend's folder, which the callers run uv in (`uv --directory`). What configuration could
  change in the installed tree (platform, Python version, wheels only, bytecode, link mode, hashes) is
  given on the command line, which wins over it; with a lock, the hashes pin every file whatever the index.
* pip reads PIP_* variables, pip.conf and ~/.netrc itself.
* Users moving from one to the other set the other's variables: PIP_INDEX_URL / PIP_EXTRA_INDEX_URL are
  given to uv as its default and extra indexes, and UV_INDEX_URL / UV_DEFAULT_INDEX / UV_INDEX /
  UV_EXTRA_INDEX_URL (a named index with the credentials of its UV_INDEX_<NAME>_* variables) to pip (which
  downloads sdists even when uv installs), each only when the tool's own variable is unset. pip.conf is
  not translated: uv has its own configuration, and a machine's pip.conf is often about pip only. uv keeps
  its own index strategy (first-index: a package the private index has is never taken from another one),
  safer against dependency confusion than pip's merge of every index.

No index setting is part of the asset hash: the installed bytes are what it covers (the lock and its hashes,
the built wheels' sha256), so moving a mirror or rotating a password never makes a new Lambda version.

Credentials must never reach cdk.out, the caches, logs or errors: `redact` is applied to every installer
output that becomes an error message or a log line (URL userinfo, and the values of secret variables).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from stacks.bundling.spec import BundlingError

# Userinfo of a URL (`scheme://user:password@`): everything up to the last "@" before the host.
_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)[^\s/?#`'\"<>]+@")
# Variables whose value is a secret wherever it appears (UV_INDEX_<NAME>_PASSWORD, *_TOKEN, ...).
_SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|TOKEN|SECRET)$", re.I)
# Shorter values are not replaced on their own (a password "ab" would garble every message); in a URL
# the userinfo rule hides them whatever their length.
_MIN_SECRET = 4

_UV_DEFAULT = ("UV_DEFAULT_INDEX", "UV_INDEX_URL")
_UV_EXTRA = ("UV_INDEX", "UV_EXTRA_INDEX_URL")


def find_uv() -> str | None:
    """The uv the bundler runs: the one on PATH, else the one installed beside this Python (the app's venv,
    requirements.txt pins it); None when there is neither."""
    found = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    return found if Path(found).exists() else None


def run_bounded(args: list[str], env: Mapping[str, str], timeout: float) -> tuple[int | None, str]:
    """Run an installer step that may start processes of its own (a build backend): (its exit status, or
    None when it did not finish within `timeout` seconds, and its redacted output). It runs in a session of
    its own, so a hung step is killed with everything it started."""
    with subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True
    ) as process:
        try:
            output = process.communicate(timeout=timeout)[0]
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            return None, f"it did not finish within {timeout:g} s"
    return process.returncode, redact(output)


def uv_to_resolve(lock: Path) -> str:
    """find_uv where resolving `lock` (a uv.lock to export, a requirements.lock to write) cannot do without
    it; BundlingError naming the lock otherwise."""
    uv = find_uv()
    if uv is None:
        raise BundlingError(f"{lock}: uv is needed to resolve the lock (pip install uv)")
    return uv


def redact(text: str, environ: Mapping[str, str] | None = None) -> str:
    """`text` with URL credentials replaced by `***`, and every secret value of `environ` too."""
    text = _USERINFO.sub(r"\1***@", text)
    for secret in sorted(_secrets(os.environ if environ is None else environ), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _secrets(environ: Mapping[str, str]) -> set[str]:
    found = set()
    for name, value in environ.items():
        if _SECRET_NAME.search(name) and value:
            found.update({value, quote(value, safe="")})
        for match in _USERINFO.finditer(value):
            userinfo = value[match.end(1) : match.end() - 1]
            # Tokens are often the user part (`https://TOKEN@host`): both halves are secret.
            for part in userinfo.split(":", 1):
                found.update({part, unquote(part)})
    return {s for s in found if len(s) >= _MIN_SECRET}


def installer_environment(
    tool: str, environ: Mapping[str, str] | None = None, *, uv_cache: Path | None = None
) -> dict[str, str]:
    """The environment to run `tool` ("uv" or "pip") with: the process's, plus the other tool's index
    variables translated where the tool's own are unset, plus uv's cache folder."""
    env = dict(os.environ if environ is None else environ)
    if tool == "uv":
        if not any(env.get(n) for n in _UV_DEFAULT) and env.get("PIP_INDEX_URL"):
            env["UV_DEFAULT_INDEX"] = env["PIP_INDEX_URL"]
        if not any(env.get(n) for n in _UV_EXTRA) and env.get("PIP_EXTRA_INDEX_URL"):
            env["UV_EXTRA_INDEX_URL"] = env["PIP_EXTRA_INDEX_URL"]
        if uv_cache is not None:
            env["UV_CACHE_DIR"] = str(uv_cache.absolute())  # uv may run in another folder (--directory)
        return env
    default = next((env[n].split()[0] for n in _UV_DEFAULT if env.get(n)), "")
    if default and not env.get("PIP_INDEX_URL"):
        env["PIP_INDEX_URL"] = default
    extra = [_pip_url(entry, env) for n in _UV_EXTRA for entry in env.get(n, "").split()]
    if extra and not env.get("PIP_EXTRA_INDEX_URL"):
        env["PIP_EXTRA_INDEX_URL"] = " ".join(extra)
    return env


def _pip_url(entry: str, env: Mapping[str, str]) -> str:
    """A UV_INDEX entry (`[name=]url`) as pip takes it: the URL, with the named index's credentials from
    UV_INDEX_<NAME>_USERNAME / _PASSWORD put in its userinfo (pip has no other way to be given them)."""
    name, sep, url = entry.partition("=")
    if not sep or "://" in name:
        return entry
    key = re.sub(r"[^A-Za-z0-9]", "_", name).upper()
    user = env.get(f"UV_INDEX_{key}_USERNAME", "")
    password = env.get(f"UV_INDEX_{key}_PASSWORD", "")
    parts = urlsplit(url)
    if not (user or password) or "@" in parts.netloc:
        return url
    userinfo = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "")
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{parts.netloc}"))


# An index refusing the credentials, as uv ("could not be queried due to a lack of valid authentication
# credentials (401 Unauthorized)", "403 Forbidden") and pip ("401 Error, Credentials not correct for") say it.
_REFUSAL_WORDS = r"(?:Unauthori[sz]ed|Forbidden|credentials)"
_AUTH_REFUSED = re.compile(rf"\b40[13]\b.*{_REFUSAL_WORDS}|{_REFUSAL_WORDS}.*\b40[13]\b", re.I)
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s`'\"()<>]+")


def auth_refused(output: str, what: str) -> BundlingError | None:
    """The error to raise when the (redacted) installer `output` says an index refused the credentials:
    it names the index, never the credentials, and where they are set. Not a MissingWheelError: a package
    the installer could not see has no wheel only in appearance, and Docker bundling would fail the same."""
    output = redact(output)
    refused = [line for line in output.splitlines() if _AUTH_REFUSED.search(line)]
    if not refused:
        return None
    hosts = sorted(
        {urlsplit(url).netloc.rpartition("@")[2] for line in refused for url in _URL.findall(line)}
    )
    return BundlingError(
        f"{what}: the package index {', '.join(hosts) or '(see below)'} refused the credentials "
        "(401/403). The bundler installs with the index settings of any uv or pip install on this machine: "
        "fix the credentials where they are set (the index URL in PIP_INDEX_URL / PIP_EXTRA_INDEX_URL / "
        "UV_INDEX..., UV_INDEX_<NAME>_USERNAME / _PASSWORD, ~/.netrc, or uv.toml / pip.conf).\n"
        + output[-2000:]
    )
