"""``python -m services.auth``: load the configuration, set up logging, run."""

import sys

import trio

from libs import log
from libs.config import ConfigError

from . import app
from .config import load

try:
    config = load()
except ConfigError as exc:
    sys.exit(f"auth: {exc}")
log.setup_from(config.common)
trio.run(app.main, config)
