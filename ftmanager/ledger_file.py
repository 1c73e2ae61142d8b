"""The ledger's SQLite file: opened and checked, a connection per thread, read-only where it
must be, and what is wrong with it said in one line.

Opening refuses, in one line and changing nothing: a damaged file, one a newer ftm wrote, and
an empty (or missing) one beside datasets/ and runs/ that a lost ledger recorded. An older one
is migrated. A threaded server calls the ledger from any thread: each thread gets its own
connection (a sqlite3 connection must not be shared while in use), and close() closes them
all. Where FTM_HOME is read-only, reads still work through a read-only connection; writes
refuse. The tables' own SQL is ledger.py's.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import weakref
from pathlib import Path
from urllib.parse import quote

from . import migrations
from .errors import InvalidInput, LedgerError

# Tables that grow by the step or the example: too big to check each time a command starts.
_BULK_TABLES = frozenset({"metrics", "events", "generations", "grades"})
_KNOWN = frozenset(fn.__name__ for fn in migrations.MIGRATIONS)


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


class _Connection(sqlite3.Connection):
    """A connection that can be weakly referenced: a finished thread's one closes with it."""


class LedgerFile:
    """Connections to one SQLite file, one per thread, opened on each thread's first use."""

    def __init__(self, path: Path):
        self.path = path
        self.home = path.parent
        self.read_only = False
        self._local = threading.local()
        self._all: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._timeout = busy_timeout()
        self._tables: set[str] = set()

    # --- connections --------------------------------------------------------------------

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
                                   check_same_thread=False,  # close() may close it from another thread
                                   factory=_Connection)
        conn.row_factory = sqlite3.Row
        with self._lock:
            self._all.add(conn)
        return conn

    def _read_only_uri(self) -> str:
        """mode=ro reads through an existing WAL; with none, immutable=1 needs no -shm file."""
        wal = self.path.with_name(self.path.name + "-wal")
        mode = "mode=ro" if wal.exists() and wal.stat().st_size else "immutable=1"
        return f"file:{quote(str(self.path))}?{mode}"

    def close(self) -> None:
        """Close every thread's connection; a thread that uses the file again reopens one."""
        with self._lock:
            conns, self._all = list(self._all), weakref.WeakSet()
            self._local = threading.local()
        for conn in conns:
            conn.close()

    def check_writable(self) -> None:
        if self.read_only:
            raise self.explain(sqlite3.OperationalError("readonly"))

    @contextlib.contextmanager
    def transaction(self):
        """BEGIN IMMEDIATE: it takes the write lock before reading, because a deferred
        read-then-write transaction fails with "database is locked" whatever the busy timeout."""
        self.check_writable()
        conn = self.conn()
        with self.errors():
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.utils()
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # --- opening: whole, current and ftm's ---------------------------------------------------

    def open(self) -> None:
        """Check the file and bring its schema up to date, or refuse it in one line."""
        with self.errors():
            try:
                applied = self._applied()
            except sqlite3.OperationalError as err:
                if not (self._is_read_only_error(err) and self.path.exists()):
                    raise
                self.close()
                self.read_only = True  # FTM_HOME is read-only: reading still works
                applied = self._applied()
            self._refuse_foreign(applied)
            if set(applied) != _KNOWN:
                self._migrate(bool(applied))
            self._check_tables()

    def _applied(self) -> list[str]:
        """The names of the ftm migrations applied to this file (and note its tables)."""
        conn = self.conn()
        self._version = conn.execute("PRAGMA user_version").fetchone()[0]
        self._tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "_sqlite_migrations" not in self._tables:
            return []
        return [r[0] for r in conn.execute("SELECT name FROM _sqlite_migrations WHERE migration_set = 'ftm' ORDER BY id")]

    def _refuse_foreign(self, applied: list[str]) -> None:
        """Refuse a ledger a newer ftm wrote, or an empty one where a ledger is known lost."""
        unknown = sorted(set(applied) - _KNOWN)
        if self._version > migrations.VERSION or unknown:
            raise LedgerError(
                f"the ledger {self.path} was written by a newer ftm (schema version {self._version}"
                + (f"; migrations {', '.join(unknown)}" if unknown else "") + "); ftm changed nothing",
                "Upgrade ftm to read it, or point FTM_HOME elsewhere.")
        if not applied and self._tables:
            raise LedgerError(f"{self.path} holds tables but is not an ftm ledger; ftm changed nothing",
                              "Point FTM_HOME at another directory.")
        lost = [d for d in ("datasets", "runs") if (self.home / d).is_dir() and any((self.home / d).iterdir())]
        if not applied and lost:
            raise LedgerError(
                f"the ledger {self.path} is empty or missing, but {self.home} holds {' and '.join(lost)} "
                "that a ledger recorded; ftm changed nothing",
                "Restore ftm.db from a backup, or move those folders away to start afresh.")

    def _migrate(self, existing: bool) -> None:
        if self.read_only:
            raise LedgerError(f"the ledger {self.path} needs an upgrade, but it is read-only",
                              "Open it once with write access, or point FTM_HOME elsewhere.")
        conn = self.conn()
        if existing and conn.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            raise self.damaged("PRAGMA quick_check failed")  # never rewrite a damaged file
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            # Set once when the ledger is new; WAL lets readers go on while a run is written.
            conn.execute("PRAGMA journal_mode=WAL")
        with self.transaction() as db:
            self._refuse_foreign(self._applied())  # again, under the lock: another process may have
            migrations.apply(db)

    def _check_tables(self) -> None:
        """A quick check of every table but the bulk ones: a damaged page fails here, in one
        line, instead of silently hiding rows from a listing (~14 ms for 10,000 runs)."""
        if sqlite3.sqlite_version_info < (3, 33, 0):  # older SQLite checks the whole file per call
            return
        for name in sorted(self._tables - _BULK_TABLES):
            quoted = name.replace('"', '""')
            verdict = self.conn().execute(f'PRAGMA quick_check("{quoted}")').fetchone()[0]
            if verdict != "ok":
                raise self.damaged(verdict)

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

    @staticmethod
    def _is_read_only_error(err: sqlite3.DatabaseError) -> bool:
        text = str(err)
        return "readonly" in text or "read-only" in text or "unable to open" in text
