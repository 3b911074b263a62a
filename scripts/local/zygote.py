"""A warm Python runtime for `make local-api WATCH=1`: the dependency layer imported once, forked per runtime.

After a source edit, most of a fresh runtime's init is importing the dependencies (FastAPI, pydantic,
SQLAlchemy...), which an edit does not change. So the edit loop starts one zygote per dependency layer:

    python -S -B zygote.py SOCKET LAYER_TREE RUNTIME_PATH   (the server; its stdin is its lifeline)
    python -S -B zygote.py --client SOCKET HANDLER          (the RIE's runtime, instead of awslambdaric)

The server imports the dependency imports the layer recorded (bytecode.py's records: what the handlers'
init imports of the layer; not awslambdaric, whose native client does not survive a fork), then waits. The
client, started by the Lambda RIE as the runtime, hands the server its stdin/stdout/stderr, environment,
working directory and sys.path; the server forks a process that takes them on and runs awslambdaric with
the handler, as `python -m awslambdaric` would, and the client exits with its status. The source (the
bundle's folder) is imported only in the fork, after the edit. What differs from a fresh interpreter:
dependency modules were imported with the server's environment, not the function's (one that reads a
variable at import sees the server's value).

No process outlives its owner: the server ends when its stdin closes (the local API ended), and a forked
runtime ends when its client's connection closes (the RIE stopped it).
"""

from __future__ import annotations

import array
import contextlib
import glob
import json
import os
import runpy
import select
import socket
import sys
import threading
import time
from typing import Any


def _recv_message(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    data, fds, _flags, _addr = socket.recv_fds(conn, 1 << 20, 3)
    return json.loads(data), list(fds)


def serve(path: str, tree: str, runtime: str) -> None:
    sys.dont_write_bytecode = True
    sys.path[0:0] = [tree, runtime]
    for record in glob.glob(os.path.join(os.path.dirname(tree), "pyc", "*", "*.json")):
        with open(record) as handle:
            imports = json.load(handle).get("imports", [])
        for module, names in imports:
            try:
                __import__(module, fromlist=names)
            except BaseException:  # an import the layer records as failing: the fork meets it again
                continue
    sys.path[:] = [p for p in sys.path if p not in (tree, runtime)]
    server = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    server.bind(path)
    server.listen(16)
    try:
        _accept(server)
    finally:  # its folder goes with it, however the local API ended
        server.close()
        os.unlink(path)
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(path))


def _accept(server: socket.socket) -> None:
    while True:
        ready, _w, _x = select.select([server, sys.stdin], [], [])
        if sys.stdin in ready and not os.read(sys.stdin.fileno(), 1):
            return  # the local API ended
        if server in ready:
            conn, _addr = server.accept()
            if os.fork() == 0:
                server.close()
                _runtime(conn)
            conn.close()
        while True:  # reap the runtimes that ended
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break


def _runtime(conn: socket.socket) -> None:
    """In the fork: become the client's runtime; exit when it ends or the client goes away."""
    try:
        message, fds = _recv_message(conn)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.setsid()
        os.environ.clear()
        os.environ.update(message["env"])
        os.chdir(message["cwd"])
        sys.path[0:0] = message["path"]
        sys.argv = ["awslambdaric", str(message["handler"])]
        threading.Thread(target=_lifeline, args=(conn,), daemon=True).start()
        runpy.run_module("awslambdaric", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    with contextlib.suppress(BaseException):  # never back into the server's loop: this is a fork
        sys.stdout.flush()
        sys.stderr.flush()
        conn.sendall(bytes([code & 0xFF]))
    os._exit(code)


def _lifeline(conn: socket.socket) -> None:
    conn.recv(1)  # the client never sends more: this returns when it has gone
    os._exit(1)


def client(path: str, handler: str, wait_s: float = 60.0) -> int:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    deadline = time.monotonic() + wait_s
    while True:  # the server may still be importing the layer
        try:
            conn.connect(path)
            break
        except (FileNotFoundError, ConnectionRefusedError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    message = {"env": dict(os.environ), "cwd": os.getcwd(), "path": paths, "handler": handler}
    socket.send_fds(conn, [json.dumps(message).encode()], array.array("i", [0, 1, 2]).tolist())
    status = conn.recv(1)
    return status[0] if status else 1


class Zygote:
    """The server for one dependency layer, owned by the local API's process."""

    def __init__(self, tree: str, runtime: str) -> None:
        import subprocess
        import tempfile

        self.tree = tree
        self.folder = tempfile.mkdtemp(prefix="credmate-zygote-")
        self.socket = os.path.join(self.folder, "runtime.sock")
        command = [sys.executable, "-S", "-B", os.path.abspath(__file__), self.socket, tree, runtime]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)

    @property
    def bootstrap(self) -> list[str]:
        """The RIE's runtime command (before the handler)."""
        return [sys.executable, "-S", "-B", os.path.abspath(__file__), "--client", self.socket]

    def stop(self) -> None:
        import shutil
        import subprocess

        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1] == "--client":
        sys.exit(client(sys.argv[2], sys.argv[3]))
    serve(*sys.argv[1:4])
