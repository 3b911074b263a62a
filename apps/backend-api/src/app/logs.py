"""Logging set-up shared by the three entry points."""

from __future__ import annotations

import logging
import os

LOG_LEVEL_ENV = "LOG_LEVEL"


def configure_logging() -> None:
    """Set the root level from LOG_LEVEL (default INFO). Lambda's runtime already installed a handler."""
    name = os.environ.get(LOG_LEVEL_ENV, "INFO").strip().upper() or "INFO"
    level = logging.getLevelName(name)
    if not isinstance(level, int):
        logging.getLogger().setLevel(logging.INFO)
        logging.getLogger(__name__).warning("%s=%r is not a logging level; using INFO", LOG_LEVEL_ENV, name)
        return
    logging.getLogger().setLevel(level)
