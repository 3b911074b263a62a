"""The static import closure of a backend: every import of its source, resolved against the built bundle.

Importing each handler at synth proves what runs at *init*; an import inside a function (a lazy import) runs
only when a request reaches it, so a missing package or a name a shared module no longer exports surfaces in
production (`No module named 'mangum'`, `cannot import name 'GoalValidationError'`). This module reads every
source file with `ast` (nothing is imported), collects every import with its file and line, and checks it:

* the module must resolve: a source module, a distribution installed in the bundle, the standard library of
  the target Python, or the Lambda runtime (`RUNTIME_PROVIDED`);
* `from M import N` with M in the source: N must be bound at M's module level when it runs (not only under
  `if TYPE_CHECKING:`, not removed by `del`), be a submodule, come through `from X import *` (which binds
  only X's `__all__`, or its public names without one), or M must define a module `__getattr__`;
* imports guarded by `try/except ImportError` (or `ModuleNotFoundError`, `Exception`, a bare except) whose
  handler does not raise, by `if importlib.util.find_spec("m"):` (for m and its submodules) and
  `if TYPE_CHECKING:` blocks are optional: never errors.

The source is read the way the target runs it (`Target`: the bundle's Python on Lambda's Linux): a branch of
`if sys.version_info ...` or `if sys.platform ...` the target never takes is skipped (its imports never run,
its names are never bound), and literal `importlib.import_module("m")` / `__import__("m")` calls count as
imports of m.

Dependencies imported lazily cannot be checked statically (which names a package exports is only known by
importing it): they are listed per function (`Closure.lazy_dependencies`), and verification imports them in
the isolated target interpreter; the probe wrapper imports the same list under the real runtime.

Per function (name, handler `module.attr`): the *init* closure is the handler module, its parent packages'
`__init__` and, transitively, the source modules they import at module level; the *lazy* closure is what
imports inside functions reach, transitively, from any module already reached. `impact()` answers which
functions a changed file reaches, from the source alone (for the PR diff).
"""

from stacks.bundling.import_closure.conditions import LAMBDA_OS_NAME, LAMBDA_PLATFORM, Target, static_truth
from stacks.bundling.import_closure.reader import ImportSite, ModuleInfo, read_source
from stacks.bundling.import_closure.resolver import (
    RUNTIME_PROVIDED,
    Closure,
    ImportProblem,
    LazyDependency,
    analyze,
    closure_error,
    impact,
    installed_top_levels,
    listed_in_requirements,
    source_reach,
    stdlib_names,
)

__all__ = [
    "LAMBDA_OS_NAME",
    "LAMBDA_PLATFORM",
    "RUNTIME_PROVIDED",
    "Closure",
    "ImportProblem",
    "ImportSite",
    "LazyDependency",
    "ModuleInfo",
    "Target",
    "analyze",
    "closure_error",
    "impact",
    "installed_top_levels",
    "listed_in_requirements",
    "read_source",
    "source_reach",
    "static_truth",
    "stdlib_names",
]
