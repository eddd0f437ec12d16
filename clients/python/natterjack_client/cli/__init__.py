"""The ``natterjack`` command line client (``natterjack --help``)."""

from ._app import COMMAND_GROUPS, build_parser, main

__all__ = ["COMMAND_GROUPS", "build_parser", "main"]
