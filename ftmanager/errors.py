"""One family of errors a user can cause: each prints as a single line and exits 1."""


class FtmError(Exception):
    """A problem the user can fix. str() is 'what happened. what to do next'."""

    def __init__(self, what: str, next_step: str = ""):
        self.what = what.rstrip(".")
        self.next_step = next_step
        super().__init__(self.line())

    def line(self) -> str:
        text = f"{self.what}."
        return f"{text} {self.next_step}".strip()


class NotFound(FtmError):
    """An id, name or file that does not exist."""


class InvalidInput(FtmError):
    """Bad data, a bad flag value or an unusable file."""


class LedgerError(FtmError):
    """The SQLite ledger cannot be read or written (locked, read-only, corrupt)."""


class BackendError(FtmError):
    """A backend refused or failed in a way the user can act on."""


class Unsupported(FtmError):
    """The backend does not offer this operation."""
