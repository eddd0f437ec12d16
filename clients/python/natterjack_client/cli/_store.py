"""Where the CLI keeps the login: one JSON file, readable by its owner only."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .._models import Credentials

FILE_NAME = "credentials.json"


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "natterjack"


class CredentialStore:
    """The stored login (tokens, API URL, username) under ``$XDG_CONFIG_HOME/natterjack``."""

    def __init__(self, directory: Path | None = None):
        self.path = (directory or config_dir()) / FILE_NAME

    def load(self) -> dict[str, Any] | None:
        try:
            return dict(json.loads(self.path.read_text()))
        except (OSError, ValueError):
            return None

    def credentials(self) -> Credentials | None:
        stored = self.load()
        if not stored or "access_token" not in stored:
            return None
        return Credentials.from_json(stored)

    def save(self, credentials: Credentials, **extra: Any) -> None:
        """Replace the file atomically; created 0600 so the tokens never sit readable."""
        body = {**(self.load() or {}), **extra, **credentials.to_json()}
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            json.dump(body, file, indent=2)
        os.replace(temporary, self.path)

    def forget(self) -> None:
        self.path.unlink(missing_ok=True)
