"""What `distill view` shows, gathered from a source into the Report of distill/view/__init__.py.

    a run directory       its dataset (data/), the rows a filter removed (removed/), the items that failed
                          (failed.jsonl), or its records when it has not exported yet; stats.json, config.yaml,
                          the card; an evaluation's results/ (results.md and its PNG charts)
    a training output     train_metrics.json, trainer_state.json's log (loss curves), recipe.yaml, its card
    a folder of runs      each run and training output in it, one tab each (a `distill zephyr` folder: its
                          steps, in the order they ran, after its results.md)
    any other dataset     whatever `distill stats` reads: a file, a saved dataset, a Hub id

Rows are read a batch at a time and each is turned into its sample once (the page's `rows` is a generator):
a 100k-row run is never held as rows and samples at once. Derived copies (the `*_gen` splits, the `trl`
config) are counted in the overview but not shown again as samples.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from distill.errors import InputError
from distill.inputs import SHARD
from distill.view import charts
from distill.view.samples import HIDDEN, as_text, chat_of, is_missing, sample_of

BATCH = 1000  # rows read from a parquet file at a time
MAX_FACET_VALUES = 50  # a column with more distinct values is not offered as a filter
FACET_CHARTS = 6  # at most this many "rows per value" charts per run
DERIVED_CONFIGS = ("gen", "trl")  # copies of the default config's rows (export.hub_layout)
DUPLICATE_OF = re.compile(r"near-duplicate of (?P<split>[^/\s]+)/(?P<index>\d+)")
TRAINING_FILES = ("train_metrics.json", "trainer_state.json", "recipe.yaml")


def kind_of(path: Path) -> str:
    """What a folder is to the page: "training", "run", "folder" (of runs) or "dataset" (anything else)."""
    if _is_training(path):
        return "training"
    if _is_run(path):
        return "run"
    return "folder" if _members(path) else "dataset"


def collect(source: str, subset: str | None = None, revision: str | None = None) -> dict[str, Any]:
    """The Report of a source (see the module docstring)."""
    path = Path(source)
    kind = kind_of(path) if path.is_dir() and subset is None and revision is None else "dataset"
    if kind == "training":
        return _report(source, [_training_run(path, "r0")])
    if kind == "folder":
        return _report(source, _folder_runs(path, _members(path)))
    return _report(source, [_run(path, "r0") if kind == "run" else _dataset_run(source, "r0", subset, revision)])


def _report(source: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    name = Path(source).name or source
    title = runs[0]["name"] if len(runs) == 1 else name
    return {"title": f"{title} · distill view", "source": source, "runs": runs}


# -- what a folder is ----------------------------------------------------------------------------------------


def _is_run(path: Path) -> bool:
    return any((path / name).exists() for name in ("stats.json", "records.jsonl", "data", "config.yaml"))


def _is_training(path: Path) -> bool:
    return any((path / name).is_file() for name in TRAINING_FILES)


def _members(path: Path) -> list[Path]:
    """The runs and training outputs in a folder, in the order they were made (their marks' times)."""
    try:
        found = [p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".") and (_is_run(p) or _is_training(p))]
    except OSError as err:
        raise InputError(f"cannot read {path}: {err.strerror}") from None
    return sorted(found, key=lambda p: (_made_at(p), p.name))


def _made_at(path: Path) -> float:
    for name in (".distill", "config.yaml", "recipe.yaml"):
        try:
            return (path / name).stat().st_mtime
        except OSError:
            continue
    return path.stat().st_mtime


def _folder_runs(path: Path, members: list[Path]) -> list[dict[str, Any]]:
    runs = []
    summary = _read_text(path / "results.md")
    if summary is not None:
        runs.append({**_empty_run("r0", "summary", "recipe"), "results": [{"title": "results.md", "markdown": summary}],
                     "notes": [f"{len(members)} steps, one tab each: {', '.join(m.name for m in members)}"]})
    for member in members:
        run_id = f"r{len(runs)}"
        runs.append(_training_run(member, run_id) if _is_training(member) and not _is_run(member)
                    else _run(member, run_id))
    return runs


def _empty_run(run_id: str, name: str, kind: str) -> dict[str, Any]:
    return {"id": run_id, "name": name, "kind": kind, "overview": [], "notes": [], "charts": [], "results": [],
            "images": [], "samples": None}


# -- a run directory -----------------------------------------------------------------------------------------


def _run(path: Path, run_id: str) -> dict[str, Any]:
    from distill.run_dir import RunDir

    stats = RunDir(path).read_stats()
    config = _read_yaml(path / "config.yaml")
    card_meta, card_body = _card(path / "README.md")
    kind = str(stats.get("command") or config.get("command") or "run")
    run = _empty_run(run_id, path.name, kind)
    run["overview"] = [t for t in (_rows_table(path), _run_table(stats), _filters_table(stats.get("filters")),
                                   _postprocess_table(stats.get("postprocess")), _settings_table(config)) if t]
    if card_meta.get("pretty_name"):
        run["notes"].append(str(card_meta["pretty_name"]))

    splits = _parquet_splits(path / "data")
    removed = _parquet_splits(path / "removed")
    sets: list[tuple[str, str, Callable[[], Iterator[dict[str, Any]]]]] = []
    for split, files in _shown_splits(splits, run["notes"]):
        sets.append(("dataset", split, _reader(files)))
    if not splits and (path / "records.jsonl").is_file():
        run["notes"].append("not exported yet: the samples are its records so far")
        records = RunDir(path).records(read_only=True)
        sets.append(("records", "records", lambda: iter(list(records))))
    for split, files in removed.items():
        sets.append(("removed", split, _reader(files)))
    failed = RunDir(path).failures(read_only=True)
    if len(failed):
        sets.append(("failed", "failed", lambda: ({"id": r["id"], "error": r.get("error")} for r in failed)))

    ratings = _ratings(path / "completions")
    measures = charts.Measures()
    run["samples"], index = _sample_set(run_id, sets, measures, ratings, _removed_links(removed))
    run["charts"] = measures.charts(run_id)
    run["charts"] += charts.aspect_ratings(run_id, _rows(_parquet_files(path / "completions")))
    filters_chart = charts.filters_chart(run_id, stats.get("filters") or [])
    run["charts"] += [filters_chart] if filters_chart else []
    post = stats.get("postprocess") or {}
    run["charts"] += charts.win_rate_charts(run_id, post.get("win_rates") or [])
    run["charts"] += charts.mt_bench_charts(run_id, post.get("mt_bench") or [])
    run["charts"] += _facet_charts(run_id, index)

    results = path / "results"
    text = _read_text(results / "results.md")
    if text is not None:
        run["results"].append({"title": "results/results.md", "markdown": _without_images(text)})
    if results.is_dir():
        for png in sorted(results.glob("*.png")):
            run["images"].append({"title": png.name, "png": png.read_bytes()})
    if card_body:
        run["results"].append({"title": "dataset card (README.md)", "markdown": card_body})
    return run


def _shown_splits(splits: dict[str, list[Path]], notes: list[str]) -> list[tuple[str, list[Path]]]:
    """The default config's splits, but a `*_sft` split that holds the same rows as its `*_prefs` split (as in
    ultrafeedback_binarized) shown once."""
    shown = []
    for split, files in splits.items():
        twin = split[: -len("_sft")] + "_prefs" if split.endswith("_sft") else None
        if twin in splits and _prompt_ids(files) == _prompt_ids(splits[twin]):
            notes.append(f"{split} holds the same rows as {twin} (as in ultrafeedback_binarized): shown once")
            continue
        shown.append((split, files))
    return shown


def _prompt_ids(files: list[Path]) -> list[Any] | None:
    import pyarrow.parquet as pq

    try:
        return [v for f in files for v in pq.read_table(f, columns=["prompt_id"]).column(0).to_pylist()]
    except Exception:  # no prompt_id column, or an unreadable file (which the rows' reading reports)
        return None


def _parquet_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.parquet")) if folder.is_dir() else []


def _parquet_splits(folder: Path) -> dict[str, list[Path]]:
    from distill.stats import _split_order

    by_split: dict[str, list[Path]] = {}
    for shard in _parquet_files(folder):
        by_split.setdefault(SHARD.match(shard.name).group("split"), []).append(shard)
    return dict(sorted(by_split.items(), key=lambda item: _split_order(item[0])))


def _reader(files: list[Path]) -> Callable[[], Iterator[dict[str, Any]]]:
    return lambda: _rows(files)


def _rows(files: list[Path], columns: list[str] | None = None) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    for file in files:
        try:
            parquet = pq.ParquetFile(file)
            for batch in parquet.iter_batches(batch_size=BATCH, columns=columns):
                yield from batch.to_pylist()
        except OSError as err:
            raise InputError(f"cannot read {file}: {err.strerror or err}") from None
        except Exception as err:  # a damaged file: pyarrow's many errors end the same way
            raise InputError(f"cannot read {file}: {type(err).__name__}: {err}") from None


def _ratings(folder: Path) -> Callable[[str, str], list[dict[str, Any]] | None] | None:
    """UltraFeedback's `completions` config as a lookup: (prompt_id, model) -> each aspect's rating and rationale."""
    files = _parquet_files(folder)
    if not files:
        return None
    table: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in _rows(files):
        aspects = [k[: -len("_rating")] for k in row if k.endswith("_rating")]
        table[(as_text(row.get("prompt_id")), as_text(row.get("model")))] = [
            {"aspect": a, "rating": row.get(f"{a}_rating"), "rationale": as_text(row.get(f"{a}_rationale"))}
            for a in aspects]
    return lambda prompt_id, model: table.get((prompt_id, model))


def _removed_links(removed: dict[str, list[Path]]):
    """Where the row a removed one duplicates is on the page: "near-duplicate of train_sft/12" names a row of the
    filter's input; it is kept row 12 minus the rows removed before it in that split (or a removed row itself)."""
    if not removed:
        return None
    gone: dict[str, list[int]] = defaultdict(list)
    for rows in (_rows(files, ["row"]) for files in removed.values()):
        for row in rows:
            split, _, index = str(row.get("row")).rpartition("/")
            if index.isdigit():
                gone[split].append(int(index))
    return {split: sorted(indices) for split, indices in gone.items()}


# -- samples -------------------------------------------------------------------------------------------------


class Index:
    """The filters' index of a sample set: each facet's value per row (as codes) and each number per row."""

    def __init__(self) -> None:
        self.count = 0
        self.facets: dict[str, dict[str, Any]] = {}  # name -> {"values": {value: code}, "codes": [...]}
        self.too_many: set[str] = set()
        self.numbers: dict[str, list[float | None]] = {}

    def add(self, facets: dict[str, str], numbers: dict[str, float]) -> None:
        for name, value in facets.items():
            if name in self.too_many:
                continue
            facet = self.facets.setdefault(name, {"values": {}, "codes": [-1] * self.count})
            facet["codes"].append(facet["values"].setdefault(value, len(facet["values"])))
            if len(facet["values"]) > MAX_FACET_VALUES:
                self.too_many.add(name)
                del self.facets[name]
        for name, number in numbers.items():
            self.numbers.setdefault(name, [None] * self.count).append(number)
        self.count += 1
        for facet in self.facets.values():  # a column this row lacks
            if len(facet["codes"]) < self.count:
                facet["codes"].append(-1)
        for values in self.numbers.values():
            if len(values) < self.count:
                values.append(None)

    def value_counts(self, name: str) -> Counter:
        facet = self.facets.get(name)
        if facet is None:
            return Counter()
        names = list(facet["values"])
        return Counter(names[code] for code in facet["codes"] if code >= 0)

    def contract(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The sample set's facets (two values or more, or one that some rows lack) and numbers, as the page reads
        them."""
        facets = [{"name": name, "label": name.replace("_", " "), "values": list(f["values"]), "codes": f["codes"]}
                  for name, f in sorted(self.facets.items(), key=lambda item: _facet_rank(item[0]))
                  if len(f["values"]) > 1 or -1 in f["codes"]]
        numbers = [{"name": name, "label": name.replace("_", " "), "values": values}
                   for name, values in self.numbers.items() if any(v is not None for v in values)]
        return facets, numbers


FACET_FIRST = ("set", "split", "removed_by", "sector", "category", "model", "chosen_model", "rejected_model",
               "outcome", "stop_reason", "finish_reason")


def _facet_rank(name: str) -> tuple[int, str]:
    return (FACET_FIRST.index(name) if name in FACET_FIRST else len(FACET_FIRST), name)


def _facets_of(row: dict[str, Any]) -> dict[str, str]:
    """The row's short text and yes/no columns: candidates for a filter."""
    out = {}
    for key, value in row.items():
        if key in HIDDEN or key in ("id", "row", "reason") or is_missing(value):
            continue
        if isinstance(value, bool) or (isinstance(value, str) and len(value) <= 60 and "\n" not in value):
            out[key] = str(value)
    return out


def _numbers_of(row: dict[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in row.items():
        if ("score" in key or "rating" in key) and isinstance(value, (int, float)) and not isinstance(value, bool) \
                and not is_missing(value):
            out[key] = float(value)
    if "score_chosen" in out and "score_rejected" in out:
        out["margin"] = out["score_chosen"] - out["score_rejected"]
    chat = chat_of(row.get("messages"))
    if chat is not None and "chosen" not in row:
        out["turns"] = float(sum(1 for m in chat if m["role"] == "assistant"))
    return out


Reader = Callable[[], Iterator[dict[str, Any]]]


def _sample_set(run_id: str, sets: list[tuple[str, str, Reader]], measures: charts.Measures, ratings, gone):
    """The sample set of a run: a first pass over its rows builds the filters' index and the charts' measures;
    the samples themselves come from a second pass, as the page is written. None when there are no rows."""
    index = Index()
    offsets: dict[tuple[str, str], int] = {}
    removed_at: dict[str, int] = {}  # a removed row's input label -> its place on the page
    for kind, split, read in sets:
        offsets[(kind, split)] = index.count
        for row in read():
            if kind in ("dataset", "records"):
                measures.add(row)
            if kind == "removed":
                removed_at[str(row.get("row"))] = index.count
            index.add({**_facets_of(row), "set": kind, "split": split}, _numbers_of(row))
    if not index.count:
        return None, index
    facets, numbers = index.contract()

    def place_of(split: str, position: int) -> int | None:
        """The page's row of the filter input's row split/position: kept (shifted by the rows removed before
        it) or removed."""
        label = f"{split}/{position}"
        if label in removed_at:
            return removed_at[label]
        if ("dataset", split) not in offsets or gone is None:
            return None
        from bisect import bisect_left

        return offsets[("dataset", split)] + position - bisect_left(gone.get(split, []), position)

    rows = _samples(run_id, sets, ratings, place_of if gone is not None else None)
    return {"count": index.count, "rows": rows, "facets": facets, "numbers": numbers}, index


def _samples(run_id: str, sets: list[tuple[str, str, Reader]], ratings, place_of) -> Iterator[dict[str, Any]]:
    for kind, split, read in sets:
        for position, row in enumerate(read()):
            if kind == "failed":
                yield {"id": f"failed/{row['id']}", "title": f"item {row['id']} failed", "meta": [["item", row["id"]]],
                       "blocks": [{"t": "note", "tone": "error", "text": as_text(row.get("error")) or "(no reason kept)"}]}
                continue
            sample = sample_of(row, ratings)
            if kind == "removed":
                sample = _removed(run_id, row, sample, place_of)
                yield {"id": f"removed/{row.get('row', position)}", **sample}
            else:
                yield {"id": f"{split}/{position}", **sample}


def _removed(run_id: str, row: dict[str, Any], sample: dict[str, Any], place_of) -> dict[str, Any]:
    reason = as_text(row.get("reason")) or "(no reason kept)"
    blocks: list[dict[str, Any]] = [{"t": "note", "tone": "warn",
                                     "text": f"removed by {as_text(row.get('removed_by'))}: {reason}"}]
    match = DUPLICATE_OF.search(reason)
    target = place_of(match["split"], int(match["index"])) if match and place_of else None
    if target is not None:
        blocks.append({"t": "link", "label": f"show the row it duplicates ({match['split']}/{match['index']} of the "
                                             "filter's input)", "run": run_id, "row": target})
    meta = [m for m in sample["meta"] if m[0] != "reason"]
    return {**sample, "meta": meta, "blocks": blocks + sample["blocks"]}


def _facet_charts(run_id: str, index: Index | None) -> list[dict[str, Any]]:
    """Rows per value of the run's categorical columns (sector, category, model, the filter that removed them, ...)."""
    if index is None:
        return []
    made = []
    for name in sorted(index.facets, key=_facet_rank):
        if name in ("set", "split") or len(made) >= FACET_CHARTS:
            continue
        shares = charts.shares(f"{run_id}-facet-{name}", f"Rows by {name.replace('_', ' ')}", index.value_counts(name))
        if shares:
            made.append(shares)
    return made


# -- the overview ----------------------------------------------------------------------------------------------


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> dict[str, Any] | None:
    return {"title": title, "columns": columns, "rows": rows} if rows else None


def _rows_table(path: Path) -> dict[str, Any] | None:
    import pyarrow.parquet as pq

    rows = []
    for folder in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        config = {"data": "default", "gen": "default (derived *_gen splits)"}.get(folder.name, folder.name)
        for split, files in _parquet_splits(folder).items():
            try:
                count = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
            except Exception:  # unreadable: the rows' reading says why
                count = None
            rows.append([config, split, count])
    return _table("Rows per config and split", ["config", "split", "rows"], rows)


def _run_table(stats: dict[str, Any]) -> dict[str, Any] | None:
    rows = []
    for key in ("command", "source", "backend"):
        if stats.get(key) is not None:
            rows.append([key, as_text(stats[key])])
    if stats.get("models"):
        rows.append(["models", ", ".join(map(str, stats["models"]))])
    items = stats.get("items") or {}
    if items:
        rows.append(["items", f"{items.get('done')} of {items.get('total')} done, {items.get('failed', 0)} failed"])
    if stats.get("stopped"):
        rows.append(["stopped", as_text(stats["stopped"])])
    tokens = stats.get("tokens")
    for key, value in (tokens.items() if isinstance(tokens, dict) else ()):
        rows.append([f"{key} tokens", value])
    if stats.get("cost_usd") is not None:
        rows.append(["cost (USD)", stats["cost_usd"]])
    for key, value in (stats.get("last_session") or {}).items():
        if not isinstance(value, dict):
            rows.append([f"last session: {key.replace('_', ' ')}", value])
    return _table("Run", ["", "value"], rows)


def _filters_table(filters: Any) -> dict[str, Any] | None:
    rows = [[as_text(f.get("name")), f.get("removed")] for f in filters or () if isinstance(f, dict)]
    return _table("Filters (rows removed)", ["filter", "removed"], rows)


def _postprocess_table(post: Any) -> dict[str, Any] | None:
    if not isinstance(post, dict):
        return None
    shown = {k: v for k, v in post.items() if k not in ("win_rates", "mt_bench")}  # their own charts and results
    return _table("Post-processing", ["", "value"], _flat(shown))


def _settings_table(config: dict[str, Any]) -> dict[str, Any] | None:
    return _table("Settings (config.yaml)", ["setting", "value"], _flat(config))


def _flat(values: dict[str, Any], prefix: str = "") -> list[list[Any]]:
    rows = []
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and len(prefix.split(".")) < 3:
            rows += _flat(value, f"{name}.")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            rows.append([name, value])
        else:
            rows.append([name, as_text(value)])
    return rows


# -- other sources ---------------------------------------------------------------------------------------------


def _dataset_run(source: str, run_id: str, subset: str | None, revision: str | None) -> dict[str, Any]:
    from distill.inputs import load_splits
    from distill.stats import _split_order

    splits = load_splits(source, subset, revision)
    if not any(splits.values()):
        raise InputError(f"input {source} is empty: no rows to show")
    run = _empty_run(run_id, Path(source).name or source, "dataset")
    ordered = sorted(splits.items(), key=lambda item: _split_order(item[0]))
    run["overview"] = [_table("Rows per split", ["split", "rows"], [[name, len(rows)] for name, rows in ordered])]
    sets = [("dataset", name, (lambda rows=rows: iter(rows))) for name, rows in ordered]
    measures = charts.Measures()
    run["samples"], index = _sample_set(run_id, sets, measures, None, None)
    run["charts"] = measures.charts(run_id) + _facet_charts(run_id, index)
    return run


def _training_run(path: Path, run_id: str) -> dict[str, Any]:
    run = _empty_run(run_id, path.name, "train")
    metrics = _read_json(path / "train_metrics.json")
    state = _read_json(path / "trainer_state.json")
    recipe = _read_yaml(path / "recipe.yaml")
    run["overview"] = [t for t in (_table("Training", ["metric", "value"], _flat(metrics)),
                                   _table("Recipe (recipe.yaml)", ["setting", "value"], _flat(recipe))) if t]
    history = state.get("log_history") if isinstance(state.get("log_history"), list) else []
    run["charts"] = charts.training_charts(run_id, [e for e in history if isinstance(e, dict)])
    if not (path / "train_metrics.json").is_file():
        run["notes"].append("not finished: no train_metrics.json yet")
    _, body = _card(path / "README.md")
    if body:
        run["results"].append({"title": "model card (README.md)", "markdown": body})
    return run


# -- files ------------------------------------------------------------------------------------------------------


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8") if path.is_file() else None
    except (OSError, UnicodeDecodeError):
        return None


def _read_json(path: Path) -> dict[str, Any]:
    text = _read_text(path)
    try:
        value = json.loads(text) if text is not None else {}
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def _read_yaml(path: Path) -> dict[str, Any]:
    text = _read_text(path)
    try:
        value = yaml.safe_load(text) if text is not None else {}
    except (yaml.YAMLError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def _card(path: Path) -> tuple[dict[str, Any], str]:
    """A card's YAML header and its Markdown body."""
    text = _read_text(path) or ""
    if text.startswith("---\n"):
        end = text.find("\n---\n", 4)
        if end != -1:
            try:
                header = yaml.safe_load(text[4:end])
            except (yaml.YAMLError, RecursionError):
                header = None
            return (header if isinstance(header, dict) else {}), text[end + 5:].strip()
    return {}, text.strip()


IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")


def _without_images(markdown: str) -> str:
    """results.md names its charts as images; the page shows them itself (and renders no Markdown image)."""
    return IMAGE.sub("", markdown)
