"""The ledger's SQLite file: a connection per thread, read-only when it must be, and what is
wrong with it said in one line.

A threaded server calls the ledger from any thread: each thread gets its own connection
(sqlite3 connections must not be shared while in use), and close() closes all of them.
Where FTM_HOME is read-only, reads still work through a read-only connection; writes refuse.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from pathlib import Path
from urllib.parse import quote

from .errors import InvalidInput, LedgerError

def busy_timeout() -> float:
    """Seconds a write waits for another process's write (FTM_BUSY_TIMEOUT, default 10)."""
    text = os.environ.get("FTM_BUSY_TIMEOUT") or "10"
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < 1e6:
        raise LedgerError(f"FTM_BUSY_TIMEOUT must be a number of seconds, not {text!r}",
                          "Set it to e.g. 10, or unset it.")
    return seconds


class LedgerFile:
    """Connections to one SQLite file, one per thread, opened on each thread's first use."""

    def __init__(self, path: Path):
        self.path = path
        self.read_only = False
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._timeout = busy_timeout()

    def conn(self) -> sqlite3.Connection:
        """This thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    def utils(self):
        """This thread's sqlite_utils Database (imported on the first write: start-up)."""
        db = getattr(self._local, "db", None)
        if db is None:
            import sqlite_utils

            db = self._local.db = sqlite_utils.Database(self.conn(), execute_plugins=False)
        return db

    def _connect(self) -> sqlite3.Connection:
        target, uri = (self._read_only_uri(), True) if self.read_only else (self.path, False)
        with self.errors():
            conn = sqlite3.connect(target, uri=uri, timeout=self._timeout, isolation_level=None,
                                   check_same_thread=False)  # close() may close it from another thread
        conn.row_factory = sqlite3.Row
        with self._lock:
            self._all.append(conn)
        return conn

    def _read_only_uri(self) -> str:
        """mode=ro reads through an existing WAL; with none, immutable=1 needs no -shm file."""
        wal = self.path.with_name(self.path.name + "-wal")
        mode = "mode=ro" if wal.exists() and wal.stat().st_size else "immutable=1"
        return f"file:{quote(str(self.path))}?{mode}"

    def fall_back_to_read_only(self) -> None:
        """Reopen this thread's connection read-only (FTM_HOME or the file is not writable)."""
        self.close()
        self.read_only = True

    def close(self) -> None:
        """Close every thread's connection; a thread that uses the file again reopens one."""
        with self._lock:
            conns, self._all = self._all, []
            self._local = threading.local()
        for conn in conns:
            conn.close()

    # --- what can be wrong with it ----------------------------------------------------------

    def damaged(self, why: str) -> LedgerError:
        return LedgerError(f"the ledger {self.path} is damaged ({why}); ftm changed nothing",
                           "Restore ftm.db from a backup, or move it away to start an empty ledger.")

    @contextlib.contextmanager
    def errors(self):
        """Turn SQLite's errors about the file into one-line ledger errors."""
        try:
            yield
        except UnicodeEncodeError as err:  # text from a command line that is not UTF-8
            raise InvalidInput(f"{err.object!r} is not valid UTF-8 text", "Check the name or id given.") from None
        except (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError):
            raise  # ftm's own mistakes keep their traceback
        except sqlite3.DatabaseError as err:
            raise self.explain(err) from None

    def explain(self, err: sqlite3.DatabaseError) -> LedgerError:
        text = str(err)
        where = f"the ledger {self.path}"
        if "locked" in text or "busy" in text:
            return LedgerError(
                f"{where} is held by another process's write (waited {self._timeout:g} s)",
                "Try again when that process finishes, or raise FTM_BUSY_TIMEOUT.",
            )
        if "readonly" in text or "read-only" in text or self.read_only and "unable to open" in text:
            return LedgerError(f"{where} is read-only, so ftm can only read it",
                               "Make FTM_HOME writable, or point FTM_HOME at a writable directory.")
        if "unable to open" in text:
            return LedgerError(f"{where} cannot be opened", "Check that FTM_HOME is a writable directory.")
        if "malformed" in text or "not a database" in text or "corrupt" in text:
            return self.damaged(text)
        return LedgerError(f"{where} failed: {text}", "Check the file, or restore it from a backup.")

    def is_read_only_error(self, err: sqlite3.DatabaseError) -> bool:
        text = str(err)
        return "readonly" in text or "read-only" in text or "unable to open" in text
