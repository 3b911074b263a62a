import sys

from scripts.diagram.cli import main

sys.exit(main())
