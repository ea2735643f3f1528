"""User-facing errors: one line that names the file and the key, exit status 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class NgptTuneError(Exception):
    """Base class of errors caused by user input; the CLI prints them as one line, exit 2."""

    exit_code = 2


class ConfigError(NgptTuneError, ValueError):
    """A configuration or campaign spec is malformed: names the source file and the key."""

    def __init__(self, message: str, *, key: str | None = None, source: str | None = None):
        self.key = key
        self.source = source
        self.detail = message
        super().__init__(self._format())

    def _format(self) -> str:
        where = f"{self.source}: " if self.source else ""
        what = f"key '{self.key}': " if self.key else ""
        return f"{where}{what}{self.detail}"

    def with_source(self, source: str) -> ConfigError:
        """The same error, attributed to ``source`` (a file path) when it has none yet."""
        if self.source:
            return self
        return ConfigError(self.detail, key=self.key, source=source)

    def under(self, prefix: str) -> ConfigError:
        """The same error with its key prefixed (``model`` + ``alpha`` -> ``model.alpha``)."""
        key = f"{prefix}.{self.key}" if self.key else prefix
        return ConfigError(self.detail, key=key, source=self.source)


class CampaignFailed(NgptTuneError):
    """The campaign ran, but not one trial trained to a result: every trial errored. Its
    folder is kept (resume or analyze it); exit status 1."""

    exit_code = 1


class DataError(NgptTuneError, ValueError):
    """A data file or folder is missing, empty or corrupt: names the file."""


def first_sentence(err: BaseException) -> str:
    """An error's message on one line: its first sentence (200 characters at most), or the
    error's type when the message is empty."""
    text = " ".join(str(err).split())
    return text.split(". ")[0][:200] or type(err).__name__


def unknown_key_message(key: str, known: Iterable[str]) -> str:
    """'unknown key' with a did-you-mean suggestion drawn from ``known``."""
    known = sorted(known)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(known)}"
    return f"unknown key{hint}"
