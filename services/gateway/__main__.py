import trio

from libs import log

from . import app, config

cfg = config.load()
log.setup(cfg.common.service, cfg.common.log_level, cfg.common.log_file)
trio.run(app.main, cfg)
