"""The embedded default: a GGUF model on the CPU through llama-cpp-python.

`--model` names an embedded model (`distill models`: SmolLM2-135M-Instruct, Gemma 3 270M base;
small, fast, offline, good for demos and tests, not for production data) or any GGUF file;
without it, the method's own embedded default (GenerationMethod.embedded_default). Chat
requests use the model's chat template when it has one; a base model without one gets a
plain transcript ("User: ... / Assistant:") to continue.

An answer is a function of the request alone, never of the requests before it, so a resumed
run writes the same dataset as an uninterrupted one:
- every prompt is evaluated in an empty context. llama-cpp-python otherwise keeps the KV
  cache of the previous prompt and its answer and evaluates only the new suffix; but
  llama.cpp's CPU kernels depend on the batch size, so a prompt evaluated in other pieces
  (a reused prefix, answer tokens evaluated one at a time) gets logits that differ from a
  fresh evaluation by up to tenths of a logit, and sampling turns that into another text
  (turn 2 of a dialogue right after its turn 1 differed from turn 2 after a resume). Two
  fresh evaluations of a prompt give the same logits to the bit;
- every request is seeded: its own seed, or one derived from its cache key. With no seed
  llama-cpp-python draws the next seed from the previous one, so an answer depended on how
  many seedless requests came before it.

Stopping (Ctrl-C, SIGTERM, a cancelled request) never frees the model under a generation:
a cancelled request stops its generation at the next token, and `aclose` stops the one
running, waits for it to leave llama.cpp, and only then frees the model (freeing it while
a worker thread was still inside llama_decode crashed the process with a segfault).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import signal
import threading
from pathlib import Path

from distill.backends.base import PermanentError, RejectedError
from distill.embedded import BASE, INSTRUCT, embedded_model
from distill.embedded import resolve as resolve_embedded
from distill.errors import ConfigError
from distill.request import Message, Request, Response, Usage


def embedded_model_path() -> Path:
    """The base embedded model's GGUF file (Gemma 3 270M, assembled into the cache once)."""
    return resolve_embedded(BASE)


def locate(model: str) -> Path:
    """The GGUF file a model option names: an embedded model's name, or a path.

    Not checked to exist (the loader says so); a word that is neither a name nor a path is
    an unknown name, and a Hugging Face model folder belongs to the transformers backend."""
    if embedded_model(model):
        return resolve_embedded(model)
    path = Path(model).expanduser()
    if (path / "config.json").is_file():
        raise ConfigError(f"{model} is a Hugging Face model folder: the transformers backend serves it "
                          "(--backend transformers); the llamacpp backend takes a GGUF")
    if not path.exists() and path.suffix != ".gguf" and "/" not in model and "\\" not in model:
        resolve_embedded(model)  # raises: no embedded model of that name
    return path


def public_name(model: str) -> str:
    """How a card and stats name it: the embedded name, else the file's name (never a local path)."""
    return model if embedded_model(model) else Path(model).expanduser().name


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

# llama.cpp reads this seed as "draw a random one"; no request may ask for it.
LLAMA_RANDOM_SEED = 0xFFFFFFFF


def request_seed(request: Request) -> int:
    """The request's own seed, or one derived from its cache key: never the previous request's."""
    seed = request.params.seed if request.params.seed is not None else int(request.key()[:8], 16)
    return seed % LLAMA_RANDOM_SEED  # 32 bits, and never the "random" seed


class Stopped(PermanentError):
    """A generation cut short because nobody waits for it any more (its request was cancelled,
    or the backend is closing); its partial text is dropped, never cached."""


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


@contextlib.contextmanager
def _ctrl_c_held():
    """Hold a Ctrl-C until the block ends, then raise it.

    llama.cpp logs through a Python callback while it loads a model; a KeyboardInterrupt
    raised inside a ctypes callback is printed (to a silenced stderr) and dropped, so a
    Ctrl-C during the load was lost and the run went on as if nothing had happened.
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    caught = []
    signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if caught:
        raise KeyboardInterrupt


_StoppableLlama = None


def _stoppable_llama(llama_cpp):
    """llama_cpp.Llama whose completions also ask its `stop_check()` after every token.

    create_chat_completion takes no stopping criteria, but every chat handler ends in
    create_completion, so chat requests stop between tokens the same way as plain ones.
    """
    global _StoppableLlama
    if _StoppableLlama is None:

        class StoppableLlama(llama_cpp.Llama):
            stop_check = None  # a callable, set around each generation

            def create_completion(self, *args, stopping_criteria=None, **kwargs):
                check = self.stop_check
                if check is not None:
                    stopping_criteria = llama_cpp.StoppingCriteriaList([*(stopping_criteria or ()), lambda ids, logits: check()])
                return super().create_completion(*args, stopping_criteria=stopping_criteria, **kwargs)

        _StoppableLlama = StoppableLlama
    return _StoppableLlama


class LlamaCppBackend:
    name = "llamacpp"
    max_concurrency = 1  # one generation at a time; llama.cpp already uses every core

    def __init__(self, model: str = INSTRUCT, n_ctx: int = 4096, n_threads: int | None = None):
        path = locate(str(model))
        if not path.is_file():
            raise ConfigError(f"GGUF model {path} not found (the llamacpp backend takes --model NAME or PATH.gguf; "
                              "names: `distill models`)")
        try:
            import llama_cpp
        except ImportError:
            raise ConfigError("the llamacpp backend needs llama-cpp-python: pip install 'distill[local]'") from None
        _silence_llama_logs(llama_cpp)
        try:
            with _ctrl_c_held():
                self.llm = _stoppable_llama(llama_cpp)(model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, verbose=False)
        except (ValueError, RuntimeError) as err:
            raise ConfigError(f"cannot load GGUF model {path}: {err}") from None
        self.path = path
        self.model = public_name(str(model))
        known = embedded_model(self.model)
        self.frequency_penalty = known.frequency_penalty if known else None  # the model's own default
        self.has_chat_template = bool(self.llm.metadata.get("tokenizer.chat_template"))
        self._lock = threading.Lock()  # one generation at a time; freeing the model waits for it
        self._closing = threading.Event()  # set by aclose: stop the generation running, start none
        self._closed = False
        self._grammars: dict[str, object] = {}

    def model_id(self) -> str:
        return self.model

    async def complete(self, request: Request) -> Response:
        cancel = threading.Event()
        try:
            return await asyncio.to_thread(self._generate, request, cancel)
        except asyncio.CancelledError:
            cancel.set()  # the worker thread stops at its next token; nobody takes its answer
            raise

    def _generate(self, request: Request, cancel: threading.Event | None = None) -> Response:
        def stopped() -> bool:  # asked by llama-cpp-python after every token
            return self._closing.is_set() or (cancel is not None and cancel.is_set())

        p = request.params
        sampling = {"temperature": p.temperature, "top_p": p.top_p, "max_tokens": p.max_tokens, "seed": request_seed(request)}
        if p.presence_penalty is not None:
            sampling["presence_penalty"] = p.presence_penalty
        if p.frequency_penalty is not None:
            sampling["frequency_penalty"] = p.frequency_penalty
        elif self.frequency_penalty is not None and request.json_schema is None:
            sampling["frequency_penalty"] = self.frequency_penalty
        if request.json_schema is not None:
            sampling["grammar"] = self._grammar(request.json_schema)
        with self._lock:
            if stopped():
                raise Stopped("the request was cancelled or the llamacpp backend is closing")
            self._empty_context()
            self.llm.stop_check = stopped
            try:
                if request.messages is not None and self.has_chat_template and request.answer_prefix:
                    prompt, stops = self._prefilled(request.messages, request.answer_prefix)
                    out = self.llm.create_completion(prompt, stop=list(p.stop) + stops, **sampling)
                    text = request.answer_prefix + out["choices"][0]["text"]
                elif request.messages is not None and self.has_chat_template:
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
            finally:
                self.llm.stop_check = None
            if stopped():  # cut short: its text is not the answer
                raise Stopped("the request was cancelled or the llamacpp backend is closing")
        usage = out.get("usage") or {}
        return Response(
            text=text,
            finish_reason=out["choices"][0].get("finish_reason") or "stop",
            usage=Usage(usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)),
            model=self.model,
        )

    def _prefilled(self, messages, prefix: str) -> tuple[list[int], list[str]]:
        """The chat rendered by the model's own template up to the assistant's turn, then the
        answer's prefix (the model continues it), as tokens; and the stop strings the template
        ends a turn with. The same rendering and tokenizing as llama-cpp-python's chat handler."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        eos, bos = (self.llm.detokenize([token], special=True).decode("utf-8", "ignore") if token >= 0 else ""
                    for token in (self.llm.token_eos(), self.llm.token_bos()))
        formatted = Jinja2ChatFormatter(self.llm.metadata["tokenizer.chat_template"], eos, bos)(messages=list(messages))
        tokens = self.llm.tokenize((formatted.prompt + prefix).encode("utf-8"), add_bos=not formatted.added_special,
                                   special=True)
        return tokens, [stop for stop in ([formatted.stop] if isinstance(formatted.stop, str) else formatted.stop or [])]

    def _grammar(self, schema: dict):
        """A llama.cpp grammar that only lets the model write JSON of this schema (cached)."""
        import json

        from llama_cpp import LlamaGrammar

        key = json.dumps(schema, sort_keys=True)
        if key not in self._grammars:
            self._grammars[key] = LlamaGrammar.from_json_schema(key, verbose=False)
        return self._grammars[key]

    def _empty_context(self) -> None:
        """Forget the previous prompt (KV cache, tokens): this one is evaluated from scratch,
        exactly as in a fresh process."""
        import llama_cpp

        memory = llama_cpp.llama_get_memory(self.llm.ctx)
        if memory is not None:
            llama_cpp.llama_memory_clear(memory, True)
        self.llm.reset()

    def _close(self) -> None:
        with self._lock:  # after the generation running, if any, has left llama.cpp
            if not self._closed:
                self._closed = True
                self.llm.close()

    async def aclose(self) -> None:
        """Stop the generation running (at its next token), wait for it, then free the model.

        The freeing runs in a worker thread that holds the generation lock: if this coroutine
        is cancelled too (a second signal), the model is still freed only once nothing uses it.
        """
        self._closing.set()
        await asyncio.to_thread(self._close)
