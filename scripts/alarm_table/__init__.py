"""README's alarm table from the alarm catalogue: `make lint` runs `python -m scripts.alarm_table --check
README.md`; `--write README.md` refreshes it (table.py)."""
