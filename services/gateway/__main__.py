import trio

from libs import log

from . import app, config

cfg = config.load()
log.setup_from(cfg.common)
trio.run(app.main, cfg)
