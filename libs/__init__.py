"""Shared runtime of the natterjack services: config, logging, bus, db, cache, http, lifecycle.

Nothing here imports ``services``; a test enforces it.
"""
