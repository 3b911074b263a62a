import sys

from scripts.alarm_table.table import main

sys.exit(main())
