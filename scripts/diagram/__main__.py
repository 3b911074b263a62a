import sys

from scripts.diagram.render import main

sys.exit(main())
