"""Writing a run's final dataset as parquet shards under RUN_DIR/data/."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from distill.run import DATA


def write_split(run_path: Path, split: str, rows: list[dict[str, Any]]) -> Path:
    """One shard per split for now, named as on the Hub: data/<split>-00000-of-00001.parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = Path(run_path) / DATA
    folder.mkdir(exist_ok=True)
    for old in folder.glob(f"{split}-*.parquet"):
        old.unlink()
    target = folder / f"{split}-00000-of-00001.parquet"
    tmp = target.with_name(target.name + ".tmp")
    pq.write_table(pa.Table.from_pylist(rows), tmp)
    os.replace(tmp, target)
    return target
