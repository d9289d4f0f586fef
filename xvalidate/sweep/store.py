"""The sweep's record of finished cells: one SQLite table in the output folder (sweep.sqlite), a
row per cell key, committed as each cell finishes, so that a rerun skips what is done."""
from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Iterable

from xvalidate.errors import OptionError
from xvalidate.sweep.cell import FIELDS

FILENAME = "sweep.sqlite"
_TYPES = {"exit_code": "INTEGER", "seconds": "REAL", "convert_seconds": "REAL", "paired": "INTEGER",
          "src_layers": "INTEGER", "final_max_abs": "REAL", "final_passed": "INTEGER", "final_is_output": "INTEGER",
          "worst_max_abs": "REAL"}
_BOOLS = ("final_passed", "final_is_output")


class Store:
    """Cell records by key in `folder`/sweep.sqlite (created when missing)."""

    def __init__(self, folder: str | Path):
        self.path = Path(folder) / FILENAME
        columns = ", ".join(f"{name} {_TYPES.get(name, 'TEXT')}" + (" PRIMARY KEY" if name == "key" else "")
                            for name in FIELDS)
        try:
            self._db = sqlite3.connect(self.path)
            self._db.execute(f"CREATE TABLE IF NOT EXISTS cells ({columns})")
            known = {row[1] for row in self._db.execute("PRAGMA table_info(cells)")}
            for name in FIELDS:  # a store written by an older version: add what it lacks
                if name not in known:
                    self._db.execute(f"ALTER TABLE cells ADD COLUMN {name} {_TYPES.get(name, 'TEXT')}")
            self._db.commit()
        except sqlite3.DatabaseError as exc:
            raise OptionError(f"--out: {self.path} is not a sweep record ({exc})") from None

    def done(self) -> set[str]:
        """Keys of every recorded cell."""
        return {key for (key,) in self._db.execute("SELECT key FROM cells")}

    def put(self, record: dict[str, Any]) -> None:
        """Record one finished cell (replacing an older record of the same key), committed at once."""
        values = [record.get(name) for name in FIELDS]
        self._db.execute(f"INSERT OR REPLACE INTO cells ({', '.join(FIELDS)}) VALUES ({', '.join('?' * len(FIELDS))})",
                         values)
        self._db.commit()

    def forget(self, keys: Iterable[str]) -> None:
        """Drop the records of `keys` (their cells run again)."""
        self._db.executemany("DELETE FROM cells WHERE key = ?", [(k,) for k in keys])
        self._db.commit()

    def records(self, keys: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Every record (or those of `keys`), in the order they were first written."""
        rows = self._db.execute(f"SELECT {', '.join(FIELDS)} FROM cells ORDER BY rowid").fetchall()
        wanted = None if keys is None else set(keys)
        out = []
        for row in rows:
            record = dict(zip(FIELDS, row))
            if wanted is None or record["key"] in wanted:
                out.append({k: (bool(v) if k in _BOOLS and v is not None else v) for k, v in record.items()})
        return out

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
