"""A password-protected package index on loopback, for tests: PEP 503 "simple" pages and the files they
link, served from a folder by a threaded http.server that requires HTTP basic auth on every request.

    with PrivateIndex(folder, "deploy", password) as index:
        index.url_with_credentials  # http://deploy:PASSWORD@127.0.0.1:PORT/simple/

Leaving the block stops the server and joins every thread it started: nothing outlives the test.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import re
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import quote


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _project(filename: str) -> str:
    """The normalised project name of a wheel (`name-version-...whl`) or sdist (`name-version.tar.gz`)."""
    return normalise(filename.split("-")[0])


class PrivateIndex:
    def __init__(self, folder: Path, username: str, password: str) -> None:
        self.folder = folder
        self.username = username
        self.password = password
        # (path, authorised) of every request, in order: what the installers asked for.
        self.requests: list[tuple[str, bool]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        # Request threads are joined by server_close (not daemons): none outlives the index.
        self._server.daemon_threads = False
        self._thread = threading.Thread(target=self._server.serve_forever, name="private-index")

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        return f"http://{self.host}/simple/"

    @property
    def url_with_credentials(self) -> str:
        return self.url_for(self.username, self.password)

    def url_for(self, username: str, password: str) -> str:
        return f"http://{quote(username, safe='')}:{quote(password, safe='')}@{self.host}/simple/"

    def served(self, filename: str) -> bool:
        return (f"/files/{filename}", True) in self.requests

    def __enter__(self) -> PrivateIndex:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        index = self
        expected = "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:  # uv asks a wheel's size first
                self._respond(with_body=False)

            def do_GET(self) -> None:
                self._respond(with_body=True)

            def _respond(self, *, with_body: bool) -> None:
                self.with_body = with_body
                authorised = self.headers.get("Authorization") == expected
                index.requests.append((self.path.split("?")[0], authorised))
                if not authorised:
                    self._send(401, b"credentials required\n", {"WWW-Authenticate": 'Basic realm="private"'})
                    return
                parts = [p for p in self.path.split("?")[0].split("/") if p]
                files = sorted(p for p in index.folder.iterdir() if p.is_file())
                if parts == ["simple"]:
                    projects = sorted({_project(p.name) for p in files})
                    body = "".join(f'<a href="/simple/{n}/">{n}</a>\n' for n in projects)
                    self._page(body)
                elif len(parts) == 2 and parts[0] == "simple":
                    mine = [p for p in files if _project(p.name) == normalise(parts[1])]
                    if not mine:
                        self._send(404, b"no such project\n")
                        return
                    body = "".join(
                        f'<a href="/files/{html.escape(p.name)}#sha256='
                        f'{hashlib.sha256(p.read_bytes()).hexdigest()}">{html.escape(p.name)}</a>\n'
                        for p in mine
                    )
                    self._page(body)
                elif len(parts) == 2 and parts[0] == "files" and (index.folder / parts[1]).is_file():
                    self._send(
                        200,
                        (index.folder / parts[1]).read_bytes(),
                        {"Content-Type": "application/octet-stream"},
                    )
                else:
                    self._send(404, b"not found\n")

            def _page(self, body: str) -> None:
                page = f"<!DOCTYPE html><html><body>\n{body}</body></html>\n".encode()
                self._send(200, page, {"Content-Type": "text/html"})

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.with_body:
                    self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # the requests list is the log

        return Handler


def write_wheel(
    folder: Path, name: str, version: str, files: dict[str, str], tag: str = "py3-none-any"
) -> Path:
    """A wheel of `files` (path in the wheel -> text) tagged `tag`, written with fixed timestamps."""
    dist = f"{name.replace('-', '_')}-{version}"
    wheel = folder / f"{dist}-{tag}.whl"
    purelib = "true" if tag.endswith("-any") else "false"
    metadata = {
        f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: credmate-tests\n"
        f"Root-Is-Purelib: {purelib}\nTag: {tag}\n",
    }
    entries = {**files, **metadata}
    record = "".join(
        f"{path},sha256={_urlsafe_digest(text.encode())},{len(text.encode())}\n"
        for path, text in entries.items()
    )
    entries[f"{dist}.dist-info/RECORD"] = record + f"{dist}.dist-info/RECORD,,\n"
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in entries.items():
            archive.writestr(zipfile.ZipInfo(path, (1980, 1, 1, 0, 0, 0)), text)
    return wheel


def _urlsafe_digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


# A PEP 517 backend kept in the sdist itself (backend-path): it needs nothing from any index, and fails while
# the flag file exists, removing it, so the first build fails and the next one succeeds.
_FLAKY_BACKEND = """
import base64, hashlib, os, zipfile

FLAG = {flag!r}
BUILDS = {builds!r}
DIST = "credmate_flaky_sdist-0.1"


def get_requires_for_build_wheel(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    # What `pip download` asks for: the metadata alone, so only a real build runs build_wheel.
    info = os.path.join(metadata_directory, DIST + ".dist-info")
    os.makedirs(info)
    with open(os.path.join(info, "METADATA"), "w") as out:
        out.write("Metadata-Version: 2.1\\nName: credmate-flaky-sdist\\nVersion: 0.1\\n")
    return DIST + ".dist-info"


def _digest(data):
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    with open(BUILDS, "a") as log:
        log.write("build\\n")
    if os.path.exists(FLAG):
        os.remove(FLAG)
        raise RuntimeError("credmate-flaky-sdist: this build fails once (flag file present)")
    entries = {{
        "credmate_flaky_sdist.py": b"BUILT = True\\n",
        DIST + ".dist-info/METADATA": b"Metadata-Version: 2.1\\nName: credmate-flaky-sdist\\nVersion: 0.1\\n",
        DIST + ".dist-info/WHEEL": (
            b"Wheel-Version: 1.0\\nGenerator: flaky\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"
        ),
    }}
    record = "".join(f"{{p}},sha256={{_digest(d)}},{{len(d)}}\\n" for p, d in entries.items())
    entries[DIST + ".dist-info/RECORD"] = (record + DIST + ".dist-info/RECORD,,\\n").encode()
    name = DIST + "-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as archive:
        for path, data in entries.items():
            archive.writestr(zipfile.ZipInfo(path, (1980, 1, 1, 0, 0, 0)), data)
    return name
"""


def write_flaky_sdist(folder: Path, flag: Path, builds: Path) -> Path:
    """`credmate-flaky-sdist==0.1`, an sdist whose build fails while `flag` exists (and removes it), and
    appends a line to `builds` at every build attempt."""
    root = "credmate_flaky_sdist-0.1"
    files = {
        "PKG-INFO": "Metadata-Version: 2.1\nName: credmate-flaky-sdist\nVersion: 0.1\n",
        "pyproject.toml": (
            '[build-system]\nrequires = []\nbuild-backend = "flaky_backend"\nbackend-path = ["."]\n\n'
            '[project]\nname = "credmate-flaky-sdist"\nversion = "0.1"\n'
        ),
        "flaky_backend.py": _FLAKY_BACKEND.format(flag=str(flag), builds=str(builds)),
    }
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / f"{root}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for relative, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{root}/{relative}")
            info.size = len(data)
            info.mtime = 315532800
            tar.addfile(info, io.BytesIO(data))
    return archive
