"""``python -m services.history``: load the configuration and run the service."""

import trio

from libs import log

from . import app, config


def run() -> None:
    settings = config.load()
    log.setup_from(settings.common)
    trio.run(app.main, settings)


if __name__ == "__main__":
    run()
