"""The bundler, plain Python (no CDK: stacks/constructs/lambda_bundle.py turns its bundle into an asset).

One module per job: spec.py (shared types and file selection), input_hash.py (asset hash, layer key),
manifest.py (which dependency manifest, its pins and local packages), indexes.py (package index settings,
redaction), install.py (dependencies), build.py (orchestration), layers.py and zipwrite.py (cached
dependency layer, zip), bundle_cache.py (locks, and pruning what has not been used for a while),
import_closure.py with import_reader.py (static import checks), verification.py and verify_cache.py
(import checks in the bundle, and which carry over), bytecode.py (init and lazy-import bytecode), sdist.py,
lock.py and strip.py.
"""
