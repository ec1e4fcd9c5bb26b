"""The content-addressed request cache: one SQLite file in WAL mode.

Every response is committed the moment it arrives. WAL with synchronous=NORMAL makes a
commit survive a crash or SIGKILL of the process (it is in the log the OS holds); only a
power cut can lose the last few commits, which a re-run then asks for again.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from distill.request import Request, Response


class RequestCache:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS responses ("
            " key TEXT PRIMARY KEY, request TEXT NOT NULL, response TEXT NOT NULL, created REAL NOT NULL)"
        )

    def get(self, key: str) -> Response | None:
        row = self._db.execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        return Response.from_dict(json.loads(row[0]), cached=True)

    def put(self, key: str, request: Request, response: Response) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO responses (key, request, response, created) VALUES (?, ?, ?, ?)",
            (
                key,
                json.dumps(request.to_dict(), ensure_ascii=False),
                json.dumps(response.to_dict(), ensure_ascii=False),
                time.time(),
            ),
        )

    def usage_by_model(self) -> dict[str, tuple[int, int]]:
        """Prompt and completion tokens of every response ever stored, per requested model:
        the run's true spend, sessions that were killed included."""
        rows = self._db.execute(
            "SELECT json_extract(request, '$.model'),"
            " SUM(json_extract(response, '$.usage.prompt_tokens')),"
            " SUM(json_extract(response, '$.usage.completion_tokens')) FROM responses GROUP BY 1"
        ).fetchall()
        return {model: (int(prompt or 0), int(completion or 0)) for model, prompt, completion in rows}

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        self._db.close()
