import sys

from scripts.dependency_graph.graph import main

sys.exit(main())
