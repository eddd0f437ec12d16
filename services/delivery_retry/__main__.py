"""``python -m services.delivery_retry``: run delivery-retry until SIGTERM."""

import trio

from libs import log

from . import app, config

if __name__ == "__main__":
    settings = config.load()
    log.setup_from(settings.common)
    trio.run(app.main, settings)
