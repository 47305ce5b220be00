"""Errors that the command line reports as one clear message (no traceback)."""
from __future__ import annotations


class StarReproError(Exception):
    """A user-facing error: bad input, missing file, stale cache. The message says what and where."""


class InputFormatError(StarReproError):
    """A raw input file does not follow its format. Names the file, the line (1-based) and what was expected."""

    def __init__(self, file: str, line: int | None, message: str):
        self.file = str(file)
        self.line = line
        self.reason = message
        where = f"{self.file}:{line}" if line is not None else self.file
        super().__init__(f"{where}: {message}")


class ParamsError(StarReproError):
    """params.yaml does not match its schema; names the key."""


class LeakError(StarReproError):
    """An unknown-class sample would reach training."""
