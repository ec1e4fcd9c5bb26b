"""The content-addressed request cache: one SQLite file in WAL mode.

Every response is committed as it arrives; the client commits the responses that arrive
together (in the same turn of the event loop) in one transaction (`put_many`), and hands
none of them out before that transaction committed. WAL with synchronous=NORMAL makes a
commit survive a crash or SIGKILL of the process (it is in the log the OS holds); only a
power cut can lose the last few commits, which a re-run then asks for again.

Beside the responses it keeps the charges: attempts a provider may bill though no answer
came back (a request that timed out), counted at their worst case, so that the spend of a
run, and its budget, hold across sessions.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from distill.errors import DistillError, write_error
from distill.request import Request, Response, Usage


# The columns distill reads from each table (a newer version may add more).
COLUMNS = {
    "responses": ("key", "request", "response", "created"),
    "charges": ("key", "model", "prompt_tokens", "completion_tokens", "reason", "created"),
}


PUT = "INSERT OR REPLACE INTO responses (key, request, response, created) VALUES (?, ?, ?, ?)"


class RequestCache:
    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            # Read before anything is written: a damaged file, or another program's database, is left as it is.
            found = {table: {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")} for table in COLUMNS}
        except sqlite3.Error as err:
            self.close()
            raise write_error(err, self.path) from None
        if any(found[table] and not set(columns) <= found[table] for table, columns in COLUMNS.items()):
            self.close()
            raise self.damaged("its tables are not those of distill's request cache")
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS responses ("
                " key TEXT PRIMARY KEY, request TEXT NOT NULL, response TEXT NOT NULL, created REAL NOT NULL)"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS charges ("
                " key TEXT NOT NULL, model TEXT NOT NULL, prompt_tokens INTEGER NOT NULL,"
                " completion_tokens INTEGER NOT NULL, reason TEXT NOT NULL, created REAL NOT NULL)"
            )
            self._db.execute("SELECT COUNT(*) FROM responses").fetchone()  # a damaged file fails here, not later
        except sqlite3.Error as err:
            self.close()
            raise write_error(err, self.path) from None

    def get(self, key: str) -> Response | None:
        try:
            row = self._db.execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error as err:
            raise write_error(err, self.path) from None
        if row is None:
            return None
        try:
            return Response.from_dict(json.loads(row[0]), cached=True)
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            raise self.damaged("an entry that is not a response") from None

    def damaged(self, what: str) -> DistillError:
        """The one-line error for a cache file that is damaged, with the ways out."""
        return DistillError(f"{self.path} is damaged ({what}): move it away and run the same command again to redo "
                            "only the items that records.jsonl does not hold, or start over with --fresh")

    def put(self, key: str, request: Request, response: Response) -> None:
        self.put_many([(key, request, response)])

    def put_many(self, entries: list[tuple[str, Request, Response]]) -> None:
        """Several responses in one transaction: when this returns all of them are committed;
        when it raises (a full disk), none is."""
        now = time.time()
        rows = [(key, json.dumps(request.to_dict(), ensure_ascii=False), json.dumps(response.to_dict(), ensure_ascii=False),
                 now) for key, request, response in entries]
        db = self._db
        try:
            if len(rows) == 1:  # one statement is its own transaction
                db.execute(PUT, rows[0])
                return
            db.execute("BEGIN")
            try:
                db.executemany(PUT, rows)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:  # a failed COMMIT may have rolled back already
                    try:
                        db.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                raise
        except sqlite3.Error as err:
            raise write_error(err, self.path) from None

    def charge(self, key: str, model: str, usage: Usage, reason: str) -> None:
        """An attempt that may be billed though it brought no answer."""
        self._write("INSERT INTO charges VALUES (?, ?, ?, ?, ?, ?)",
                    (key, model, usage.prompt_tokens, usage.completion_tokens, reason, time.time()))

    def _write(self, sql: str, values: tuple) -> None:
        try:
            self._db.execute(sql, values)
        except sqlite3.Error as err:
            raise write_error(err, self.path) from None

    @staticmethod
    def check(path: Path) -> None:
        """That another run's cache can be read, opening it read-only (`distill merge`'s shards)."""
        try:
            db = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
            try:
                db.execute("SELECT COUNT(*) FROM responses").fetchone()
            finally:
                db.close()
        except sqlite3.Error as err:
            raise write_error(err, path) from None

    def absorb(self, other: Path) -> None:
        """Copy in another cache's responses (those not here yet) and its charges."""
        try:
            self._db.execute("ATTACH DATABASE ? AS other", (str(other),))
            try:
                self._db.execute("BEGIN")
                self._db.execute("INSERT OR IGNORE INTO responses SELECT key, request, response, created FROM other.responses")
                if self._db.execute("SELECT 1 FROM other.sqlite_master WHERE name = 'charges'").fetchone():
                    self._db.execute("INSERT INTO charges SELECT key, model, prompt_tokens, completion_tokens, reason, created"
                                     " FROM other.charges")
                self._db.execute("COMMIT")
            finally:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                self._db.execute("DETACH DATABASE other")
        except sqlite3.Error as err:
            raise write_error(err, self.path) from None

    def usage_by_model(self) -> dict[str, tuple[int, int]]:
        """Prompt and completion tokens of every response ever stored and every charged attempt,
        per requested model: the run's true spend, sessions that were killed included."""
        try:
            rows = self._db.execute(
                "SELECT json_extract(request, '$.model'),"
                " SUM(json_extract(response, '$.usage.prompt_tokens')),"
                " SUM(json_extract(response, '$.usage.completion_tokens')) FROM responses GROUP BY 1"
                " UNION ALL SELECT model, SUM(prompt_tokens), SUM(completion_tokens) FROM charges GROUP BY 1"
            ).fetchall()
        except sqlite3.Error as err:
            raise write_error(err, self.path) from None
        usage: dict[str, tuple[int, int]] = {}
        for model, prompt, completion in rows:
            before = usage.get(model, (0, 0))
            usage[model] = (before[0] + int(prompt or 0), before[1] + int(completion or 0))
        return usage

    def __len__(self) -> int:
        try:
            return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
        except sqlite3.Error as err:
            raise write_error(err, self.path) from None

    def close(self) -> None:
        try:
            db = self._db
        except AttributeError:  # the connection was never made
            return
        try:
            db.close()
        except sqlite3.Error:
            pass
