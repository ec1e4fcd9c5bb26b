"""Uploads to the Hub: a run's exported dataset (`distill push`) and a trained model.

The token comes from HF_TOKEN or the user's `hf auth login`, never from a flag, and is
never written anywhere. Only the card and the shards its configs name are uploaded: the
request cache, records and config stay on this machine. A model is uploaded with its card
and tokenizer, without the checkpoints and trainer state beside it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from distill import secrets
from distill.card import for_hub
from distill.errors import ConfigError, DistillError
from distill.run_dir import write_atomic

# The Hub's rules for each half of org/name: letters, digits, '-', '_' and '.', not starting or
# ending with '-' or '.', no '--' or '..', at most 96 characters; a name may not end in .git.
REPO_PART = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?$")
MAX_REPO_PART = 96


def card_header(card: str) -> dict[str, Any]:
    """The YAML header of a dataset card ({} when there is none); a ValueError when it cannot be read."""
    if not card.startswith("---\n"):
        return {}
    head = card[4:].split("\n---\n", 1)[0]
    try:
        header = yaml.safe_load(head)
    except (yaml.YAMLError, RecursionError) as err:
        raise ValueError(f"its YAML header is not valid YAML ({' '.join(str(err).split())[:200]})") from None
    if header is None:
        return {}
    if not isinstance(header, dict):
        raise ValueError("its YAML header is not a mapping")
    return header


def dataset_files(run_path: Path) -> list[str]:
    """What `distill push` uploads: the card and the parquet shards of the configs it declares,
    each a file in a config's own folder. Whatever the card says (it may have been edited),
    nothing else goes: not the cache, the records, the config or the stats."""
    from distill.export import CONFIG_NAME, SPLIT_NAME

    card = run_path / "README.md"
    if not card.is_file():
        raise DistillError(f"{run_path} has no final dataset (no README.md): finish the run first")
    files = ["README.md"]
    try:
        header = card_header(card.read_text(encoding="utf-8"))
    except OSError as err:
        raise DistillError(f"cannot read {card}: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise DistillError(f"{card} is not UTF-8 text: re-run the command to export again") from None
    except ValueError as err:
        raise DistillError(f"{card}: {err}: re-run the command to export again") from None
    configs = header.get("configs") or []
    if not isinstance(configs, list):
        raise DistillError(f"{card}: its `configs:` is not a list: re-run the command to export again")
    for config in configs:
        for entry in config.get("data_files", []) if isinstance(config, dict) else []:
            pattern = str(entry.get("path", "")) if isinstance(entry, dict) else ""
            folder, _, name = pattern.partition("/")
            split = name.removesuffix("-*")
            if not (CONFIG_NAME.match(folder) and ".." not in folder and name.endswith("-*") and SPLIT_NAME.match(split)):
                raise DistillError(f"{run_path}/README.md names data files {pattern!r}, which distill does not upload "
                                   "(a config's shards are FOLDER/SPLIT-*)")
            shards = sorted(p for p in (run_path / folder).glob(f"{split}-*.parquet") if p.is_file() and not p.is_symlink())
            if not shards:
                raise DistillError(f"{run_path} has no files for {pattern}: re-run the command to export again")
            files += [p.relative_to(run_path).as_posix() for p in shards]
    if len(files) == 1:
        raise DistillError(f"{run_path}/README.md declares no data files")
    return list(dict.fromkeys(files))


def check_repo_id(repo_id: str, flag: str) -> None:
    """Refuse, before anything is written or sent, a repository id the Hub would refuse."""
    parts = repo_id.split("/") if isinstance(repo_id, str) else []
    if len(parts) != 2:
        raise ConfigError(f"{flag} must look like org/name, not {repo_id!r}")
    for part in parts:
        why = None
        if not part:
            why = "an empty part"
        elif len(part) > MAX_REPO_PART:
            why = f"{part[:20]}... is longer than {MAX_REPO_PART} characters"
        elif not REPO_PART.match(part):
            why = (f"{part!r} may hold only letters, digits, '-', '_' and '.', and may not start or end "
                   "with '-' or '.'")
        elif "--" in part or ".." in part:
            why = f"{part!r} holds '--' or '..'"
        if why:
            raise ConfigError(f"{flag} must look like org/name, not {repo_id!r}: {why}")
    if parts[1].lower().endswith(".git"):
        raise ConfigError(f"{flag} must look like org/name, not {repo_id!r}: the Hub refuses names ending in .git")


def hub_api():
    """An HfApi with the user's token; a clear error when there is none."""
    from huggingface_hub import HfApi, get_token

    token = get_token()
    if not token:
        raise ConfigError("no Hugging Face token: set HF_TOKEN or run `hf auth login`")
    secrets.register(token)  # from a login file too: redacted wherever an error would carry it
    return HfApi(token=token)


def upload(api, repo_id: str, repo_type: str, folder: Path, private: bool = False, revision: str | None = None,
           **patterns) -> str:
    """Create the repository if needed and upload `folder` (filtered by allow/ignore patterns)."""
    try:
        url = api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        if revision:
            api.create_branch(repo_id, branch=revision, repo_type=repo_type, exist_ok=True)
        api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type=repo_type, revision=revision,
                          commit_message=f"Upload a {repo_type} made with distill", **patterns)
    except _hub_errors() as err:
        status = getattr(getattr(err, "response", None), "status_code", None)
        if status in (401, 403):
            raise DistillError(f"the Hub refused the token for {repo_id} (HTTP {status})") from None
        reason = " ".join(str(err).split())[:300] or type(err).__name__
        unanswered = isinstance(err, (ConnectionError, TimeoutError)) or not isinstance(err, (OSError, ValueError))
        if status is None and unanswered:  # no answer at all: the network, or the endpoint (HF_ENDPOINT)
            raise DistillError(f"push to {repo_id} failed: cannot reach the Hub at {_endpoint()}: {reason}") from None
        raise DistillError(f"push to {repo_id} failed: {reason}") from None
    return str(url)


def _hub_errors() -> tuple[type[BaseException], ...]:
    """What an upload raises when the Hub, the network or the endpoint fails: HfHubHTTPError is an
    OSError, but a connection refused or a timeout is an error of the HTTP library huggingface_hub
    is built on (httpx's, or its fork's), which is no OSError; a repository id or revision the Hub's
    client refuses is an HFValidationError (a ValueError)."""
    import importlib

    errors: list[type[BaseException]] = [OSError]
    try:
        from huggingface_hub.errors import HFValidationError

        errors.append(HFValidationError)
    except ImportError:
        pass
    for name in ("httpx2", "httpx", "requests"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        for attr in ("HTTPError", "InvalidURL", "RequestException"):
            error = getattr(module, attr, None)
            if isinstance(error, type) and issubclass(error, Exception):
                errors.append(error)
    return tuple(errors)


def _endpoint() -> str:
    """The Hub endpoint in use (HF_ENDPOINT), without any credentials in its URL."""
    try:
        from huggingface_hub import constants

        endpoint = str(constants.ENDPOINT)
    except (ImportError, AttributeError):
        return "the configured endpoint"
    return re.sub(r"//[^/@]*@", "//", endpoint)


def push_run(run_path: Path, repo_id: str, private: bool = False, revision: str | None = None, api=None) -> str:
    run_path = Path(run_path)
    check_repo_id(repo_id, "--repo-id")
    if not run_path.is_dir():
        raise DistillError(f"{run_path} is not a run directory")
    patterns = dataset_files(run_path)
    api = api or hub_api()
    # The card's loading snippet names the repository once it is known.
    card_path = run_path / "README.md"
    card = card_path.read_text(encoding="utf-8")
    hub_card = for_hub(card, repo_id)
    if hub_card != card:
        write_atomic(card_path, hub_card)
    try:
        return upload(api, repo_id, "dataset", run_path, private=private, revision=revision, allow_patterns=patterns)
    except BaseException:
        if hub_card != card:  # a push that failed leaves the run as it was
            try:
                write_atomic(card_path, card)
            except DistillError:
                pass
        raise


# What a training output_dir holds beside the model: resumable state, not for the Hub.
MODEL_IGNORE = ["checkpoint-*", "checkpoint-*/**", "training_args.bin", "runs/**"]


def push_model(model_dir: Path, repo_id: str, private: bool = False, api=None) -> str:
    """Upload a trained model (weights, tokenizer, card, metrics) from a training output_dir."""
    return upload(api or hub_api(), repo_id, "model", Path(model_dir), private=private, ignore_patterns=MODEL_IGNORE)
