"""Tests of the local runtime (scripts/local). They build bundles with the harness library next door."""

import sys
from pathlib import Path

# tests/harness is a folder of modules imported by their own names (its tests run as rootless modules).
_HARNESS = str(Path(__file__).resolve().parents[1] / "harness")
if _HARNESS not in sys.path:
    sys.path.insert(0, _HARNESS)
