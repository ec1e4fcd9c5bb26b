"""The dataset card, generated from the run: what made it, what it holds, what it cost."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import yaml

from distill.export import DatasetConfig, Written, card_configs, dataset_rows

# Stands in for the repository id until `distill push` knows it.
REPO_PLACEHOLDER = "YOUR_ORG/YOUR_DATASET"


@dataclass(frozen=True)
class MethodCard:
    """What the dataset card says about how the data was made."""

    name: str
    command: str
    description: str
    paper: str | None = None
    paper_url: str | None = None


def card_features(features) -> list:
    """The `dataset_info.features` of a card, as `datasets` itself writes them (its public API)."""
    from datasets.info import DatasetInfo, DatasetInfosDict
    from huggingface_hub import DatasetCardData

    card = DatasetCardData()
    DatasetInfosDict({"default": DatasetInfo(features=features)}).to_dataset_card_data(card)
    return card.to_dict()["dataset_info"]["features"]


def size_category(rows: int) -> str:
    for bound, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if rows < bound:
            return label
    return "1M<n<10M" if rows < 10_000_000 else "n>10M"


def render_card(
    method: MethodCard,
    configs: list[DatasetConfig],
    written: list[Written],
    settings: dict[str, Any],
    stats: dict[str, Any],
    models: list[str],
    notes: list[str] = (),
    local_path: str | None = None,
) -> str:
    total_rows = sum(dataset_rows(configs, written).values())
    info = [
        {
            "config_name": c.name,
            "features": card_features(c.features),
            "splits": [{"name": w.split, "num_bytes": w.bytes, "num_examples": w.rows} for w in written if w.config == c.name],
        }
        for c in configs
    ]
    header = {
        "pretty_name": f"{method.name} ({', '.join(models)})",
        "license": "other",
        "task_categories": ["text-generation"],
        "tags": ["synthetic", "distill"],
        "size_categories": [size_category(total_rows)],
        "configs": card_configs(configs),
        "dataset_info": info,
    }
    template = jinja2.Template(
        resources.files("distill").joinpath("dataset_card.md.j2").read_text(encoding="utf-8"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return template.render(
        header=yaml.safe_dump(header, sort_keys=False, allow_unicode=True),
        title=header["pretty_name"],
        method=method,
        settings={key: cell(value) for key, value in settings.items()},
        written=written,
        columns=list(configs[0].features),
        notes=notes,
        tokens=stats.get("tokens"),
        cost_usd=stats.get("cost_usd"),
        filters=stats.get("filters") or [],
        models=models,
        repo_id=REPO_PLACEHOLDER,
        local_path=local_path,
        local_use=LOCAL_USE,
    )


LOCAL_USE = "Before it is pushed to the Hub, load it from its folder:"


def for_hub(card: str, repo_id: str) -> str:
    """The card as it is uploaded: the loading snippet names the repository, not a local folder."""
    lines = [line for line in card.replace(REPO_PLACEHOLDER, repo_id).split("\n") if not line.startswith(LOCAL_USE)]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines))


def public_input(value: str) -> str:
    """A local path reduced to its name (no local paths in a card); anything else as is."""
    path = Path(value).expanduser()
    looks_local = value.startswith(("/", "~", "./", "../", "\\")) or (len(value) < 4096 and path.exists())
    return path.name if looks_local else value


SPEC_KEYS = {"model", "backend", "base_url", "api_key_env"}


def public_value(value: Any) -> Any:
    """A setting as a card may show it: model names and file names only, never a local path,
    an endpoint or the name of a key's variable."""
    if isinstance(value, dict) and "model" in value and set(value) <= SPEC_KEYS:
        return public_input(value["model"])  # a model spec: its name, or a GGUF/folder's file name
    if isinstance(value, dict):
        return {k: public_value(v) for k, v in value.items() if k not in ("base_url", "api_key_env")}
    if isinstance(value, (list, tuple)):
        return [public_value(v) for v in value]
    if isinstance(value, Path):
        return value.name
    if isinstance(value, str):
        return "(an endpoint)" if "://" in value else public_input(value)
    if hasattr(value, "model") and hasattr(value, "base_url"):  # a ModelSpec
        return public_input(value.model)
    return value


def cell(value: Any) -> str:
    """A value as a Markdown table cell: numbers short, lists and mappings flat, pipes escaped."""
    if isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, dict):
        return ", ".join(f"{k}={cell(v)}" for k, v in value.items())
    elif isinstance(value, (list, tuple)):
        if all(isinstance(v, str) for v in value):
            return "<br>".join(f"`{cell(v)}`" for v in value)
        return ", ".join(cell(v) for v in value)
    else:
        text = str(value)
    return " ".join(text.replace("|", "\\|").split())
