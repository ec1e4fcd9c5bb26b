"""Training from a GGUF: an embedded model's name (`gemma3-270m`) or a `.gguf` file as a stage's `model`.

Training needs full-precision weights, so the GGUF is de-quantized once with transformers' GGUF
loader and saved with its tokenizer as a safetensors folder in distill's cache; every later load
reads that folder:

    CACHE/dequantized/<file stem>-<sha256 of the file, 16 hex>/   model.safetensors, config, tokenizer, gguf.json

The key is the whole file's sha256: it reads 250 MB in about 0.3 s, while a digest of the file's
ends would give a fine-tune that changed only inner tensors the folder of the model it came from.
The folder is written under a temporary name and renamed into place, under a lock: a killed
conversion leaves nothing that counts as done, and two processes (accelerate's workers) convert once.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

from distill import embedded
from distill.errors import ConfigError, InputError

MARKER = "gguf.json"  # provenance, written last into the folder: source file, quantization, sha256


def gguf_file(name_or_path: str) -> Path | None:
    """The GGUF file a starting model names (an embedded model's name, or a path ending in .gguf); None otherwise."""
    if name_or_path in embedded.MODELS:
        return embedded.resolve(name_or_path)
    if not name_or_path.lower().endswith(".gguf"):
        return None
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        raise ConfigError(f"model {name_or_path}: no such GGUF file")
    return path


def quantization(path: Path) -> str:
    """The file's quantization as llama.cpp names it (Q4_K_M, Q4_1, ...), from its metadata."""
    import gguf
    from transformers.integrations.gguf.reader import read_gguf_metadata

    try:
        metadata, _ = read_gguf_metadata(str(path))
    except Exception as err:  # noqa: BLE001 - a damaged header fails in many ways (struct, unicode, index...)
        raise InputError(f"{path.name} is not a readable GGUF file: {' '.join(str(err).split())[:200]}") from None
    file_type = metadata.get("general.file_type")
    try:
        return gguf.LlamaFileType(file_type).name.removeprefix("MOSTLY_")
    except ValueError:
        return "quantized"  # a file type this gguf package does not name


def sha256(path: Path) -> str:
    """The file's sha256, computed once per process (again if its size or mtime changed)."""
    path = path.resolve()
    stat = path.stat()
    return _sha256(path, stat.st_size, stat.st_mtime_ns)


@functools.cache
def _sha256(path: Path, size: int, mtime_ns: int) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def cached_folder(path: Path) -> Path:
    """Where the de-quantized copy of `path` is (or will be) kept."""
    return embedded.cache_dir() / "dequantized" / f"{path.resolve().stem}-{sha256(path)[:16]}"


def dequantized_folder(path: Path) -> Path:
    """The safetensors folder of the GGUF file `path`, de-quantized now unless it was before."""
    folder = cached_folder(path)
    if folder.is_dir():
        return folder
    from filelock import FileLock

    quant = quantization(path)  # a file that is no GGUF is one line, before anything is written
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{folder}.lock"):
        if folder.is_dir():  # another process converted it while this one waited
            return folder
        for left in folder.parent.glob(f".{folder.name}.*"):  # a killed conversion's (none runs: the lock is ours)
            shutil.rmtree(left, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            _convert(path, staging)
            provenance = {"source": path.name, "quantization": quant, "sha256": sha256(path)}
            (staging / MARKER).write_text(json.dumps(provenance, indent=2) + "\n")
            os.replace(staging, folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return folder


def _convert(path: Path, into: Path) -> None:
    if importlib.util.find_spec("gguf") is None:
        raise ConfigError("training from a GGUF needs the gguf package: pip install 'distill[train]' (or pip install gguf)")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        from transformers import GgufConfig
    except ImportError:
        raise ConfigError("training from a GGUF needs a newer transformers (one with GgufConfig): "
                          "pip install -U transformers") from None
    source = {"pretrained_model_name_or_path": str(path.parent), "gguf_file": path.name}
    try:
        # dequantize=True: plain dense weights, which training needs and save_pretrained can write.
        model = AutoModelForCausalLM.from_pretrained(**source, quantization_config=GgufConfig(dequantize=True))
        tokenizer = AutoTokenizer.from_pretrained(**source)
    except Exception as err:  # noqa: BLE001 - an unsupported architecture, a truncated file: transformers says why
        raise InputError(f"cannot de-quantize {path.name} with transformers: {' '.join(str(err).split())[:300]}") from None
    model.save_pretrained(str(into))  # safetensors
    tokenizer.save_pretrained(str(into))
