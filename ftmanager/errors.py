"""One family of errors a user can cause: each prints as a single line and exits 1."""

import re

# user:password@ in a URL (OPENAI_BASE_URL=https://user:pw@host): never printed or recorded.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]*@")


def without_userinfo(text: str) -> str:
    """text with the user info (user:password@) of every URL in it removed."""
    return _USERINFO.sub(r"\1", text)


class FtmError(Exception):
    """A problem the user can fix. str() is 'what happened. what to do next'."""

    def __init__(self, what: str, next_step: str = ""):
        self.what = without_userinfo(what.rstrip("."))
        self.next_step = without_userinfo(next_step)
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


class Refused(BackendError):
    """The provider definitely refused to start a job: none exists, so the run fails for good.

    The one exception a backend's start() raises for that. Any other exception from start()
    (a NotFound, a LedgerError, a dropped connection) leaves the run `created`, and `ftm sync`
    finds or starts its job later.
    """


class Unsupported(FtmError):
    """The backend does not offer this operation."""
