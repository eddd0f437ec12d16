"""``python -m services.delivery_retry``: run delivery-retry until SIGTERM."""

import trio

from libs import log

from . import app, config

if __name__ == "__main__":
    settings = config.load()
    log.setup(settings.common.service, settings.common.log_level, settings.common.log_file)
    trio.run(app.main, settings)
