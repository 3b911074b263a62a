import sys

from scripts.checkov_gate.gate import main

sys.exit(main())
