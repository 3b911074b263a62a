"""`make local-api WATCH=1`'s fast path: a saved source edit rebuilt by the bundler itself and served by new
runtimes, with no `cdk synth` (a change to cdk.json or the requirements still synthesizes again).

The bundle is built from the same spec the stack uses (stacks/backend_bundle.py), on the cached dependency
layer: only the edited source is new, so the build takes about a tenth of a second. Every function whose
code was the previous backend bundle then runs the new one, in fresh runtimes started on their next request,
forked from a zygote that has imported the layer's dependencies already (scripts/local/zygote.py).
Nothing is served stale as if it were the new code:

* a source the bundler refuses (the static import check) is printed, and the functions answer 502 with it
  until an edit fixes it;
* a handler that does not import fails its runtime's init: the request answers 502, the log shows the error;
* the import verification synth would run still runs, once the new code has answered its first request
  (so it does not compete with that request for the CPU), and a failure is printed and answered as above.
"""

from __future__ import annotations

import platform
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from scripts.local.emulator import runtime_path
from scripts.local.environment import environment_config
from scripts.local.stack import LocalFunction, Runtimes, backend_root
from scripts.local.zygote import Zygote
from stacks.backend_bundle import bundle_spec, handler_checks
from stacks.bundling import bundle_cache
from stacks.bundling.build import build_bundle
from stacks.bundling.spec import BundleResult, BundlingError, source_root
from stacks.bundling.verification import verify_bundle

Log = Callable[[str], None]
_HOST_ARCH = "arm64" if platform.machine().lower() in ("aarch64", "arm64") else "x86_64"


@dataclass
class Served:
    """What the gateway serves for the backend bundle: its runtimes, and the functions that must answer an
    error instead (function logical ID -> why)."""

    runtimes: Runtimes
    failures: dict[str, str] = field(default_factory=dict)
    answered: threading.Event = field(default_factory=threading.Event)


class EditLoop:
    """Rebuilds the backend bundle of one environment on a source edit and hands the gateway new runtimes."""

    def __init__(self, context: Mapping[str, str], environment: str, cache_dir: Path, log: Log) -> None:
        config = environment_config(context, environment)
        self.spec = bundle_spec(config, backend_root=backend_root(context), cache_dir=cache_dir)
        self.checks = handler_checks(config)
        self.log = log
        self.current: BundleResult = build_bundle(self.spec)  # the bundle synth built: a cache hit
        self.zygote: Zygote | None = None
        self._warm(self.current)

    def _warm(self, result: BundleResult) -> None:
        """A zygote (local/zygote.py) for the bundle's dependency layer, made ready before the edit."""
        tree = str(result.layer) if result.layer else None
        if self.zygote is not None and self.zygote.tree != tree:
            self.zygote.stop()
            self.zygote = None
        if tree is not None and self.zygote is None:
            self.zygote = Zygote(tree, str(runtime_path()))

    def close(self) -> None:
        if self.zygote is not None:
            self.zygote.stop()

    def rebuild(self, runtimes: Runtimes, function_ids: list[str], extra_env: Mapping[str, str]) -> Served:
        """New runtimes for `function_ids` where they ran the previous bundle (raises nothing: a failure is
        logged and becomes the functions' answer)."""
        functions = {fid: runtimes.function(fid) for fid in function_ids}
        backend = [fid for fid, fn in functions.items() if fn.code == self.current.directory]
        try:
            result = build_bundle(self.spec, log=self.log)
        except BundlingError as exc:
            self.log(
                f"[local-api] rebuild FAILED; the backend's functions answer 502 until it is fixed:\n{exc}"
            )
            return Served(
                Runtimes(functions, extra_env=extra_env, log=self.log), dict.fromkeys(backend, str(exc))
            )
        for fid in backend:
            functions[fid] = _with_code(functions[fid], result)
        if result.directory != self.current.directory:  # no longer served: the cache may prune it
            bundle_cache.release(self.current.directory.parent)
        self.current = result
        self._warm(result)
        self.log(f"{result.summary(sorted(functions[f].label for f in backend))}")
        self.log("[local-api] reloaded: the edit is served by new runtimes; its verification follows")
        bootstrap = self.zygote.bootstrap if self.zygote else ()
        served = Served(Runtimes(functions, extra_env=extra_env, log=self.log, bootstrap=bootstrap))
        threading.Thread(target=self._verify, args=(result, served, backend), daemon=True).start()
        return served

    def _verify(self, result: BundleResult, served: Served, backend: list[str]) -> None:
        served.answered.wait(10)
        if self.spec.architecture != _HOST_ARCH:
            self.log(f"[local-api] not verified: an {self.spec.architecture} bundle on an {_HOST_ARCH} host")
            return
        try:
            done = verify_bundle(result, self.spec, self.checks)
        except BundlingError as exc:
            served.failures.update(dict.fromkeys(backend, str(exc)))
            self.log(f"[local-api] the new bundle FAILED verification; its functions answer 502:\n{exc}")
            return
        self.log(f"[local-api] {done.summary(self.spec.runtime)}")


def _with_code(fn: LocalFunction, result: BundleResult) -> LocalFunction:
    directory, *rest = result.paths
    return replace(fn, code=directory, layers=tuple(rest))


def source_only(changed: list[Path], context: Mapping[str, str], inputs: Sequence[Path]) -> bool:
    """Whether every changed file is backend source (anything else needs a synth). `inputs`: what a rebuild
    depends on besides the source (api.watched_inputs); in the flat layout the manifest, its lock and local
    packages can sit inside the source folder, and a change to them is not a source edit."""
    src = source_root(backend_root(context))
    return bool(changed) and all(
        path.is_relative_to(src) and not any(path.is_relative_to(i) for i in inputs) for path in changed
    )
