import sys

from scripts.pr_diff.cli import main

sys.exit(main())
