"""A local Hugging Face model folder in-process through transformers (CPU or GPU), batched.

How a just-trained checkpoint answers questions when there is no vLLM: `--backend
transformers --model FOLDER` (a folder with config.json, weights and tokenizer, or a LoRA
adapter with its tokenizer, merged on load into the local base it names; nothing is fetched
from the Hub). It runs on CUDA when there is a GPU (dtype "auto": the checkpoint's
own), else on the CPU in float32 (bfloat16 matmuls are slow or missing on most CPUs).

Chat requests go through the tokenizer's chat template; a model without one (a base model)
gets the plain transcript of the llamacpp backend ("User: ... / Assistant:") to continue.
Completion requests are raw text. JSON schemas are not enforced (transformers has no
grammar): pipelines parse replies tolerantly.

Batching: the requests waiting when the model is free are generated together, up to
`max_batch`, in one left-padded `generate` call. Sampling is done per row by a logits
processor (temperature, top_p, presence and frequency penalties, and a torch.Generator seeded per request as
llamacpp's `request_seed`), and each row ends on its own (end of text, a stop string, its own
max_tokens), so requests with different sampling parameters share a batch. Whether batching
changes an answer is measured in tests/test_transformers_backend.py: see `max_batch`.

Stopping never frees the model under a generation: a cancelled request ends its row at the
next token, `aclose` ends every row, waits for `generate` to return, then frees the model.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
from dataclasses import dataclass, field
from pathlib import Path

from distill.backends.base import PermanentError, RejectedError
from distill.backends.llamacpp import TRANSCRIPT_STOPS, Stopped, render_transcript, request_seed
from distill.errors import ConfigError
from distill.request import Request, Response, Usage

MAX_BATCH = 8


@dataclass
class _Job:
    request: Request
    ids: list[int]
    stops: tuple[str, ...]
    prefix: str  # the answer's prefilled beginning, returned as part of its text
    transcript: bool  # a chat rendered as a plain transcript: strip the reply as llamacpp does
    future: asyncio.Future
    limit: int  # most new tokens: its max_tokens, or fewer where the model's positions end
    cancelled: threading.Event = field(default_factory=threading.Event)


def _row_sampler(jobs: list[_Job], prompt_width: int, device):
    """A logits processor that picks each row's next token with that row's own parameters and
    generator, and leaves only that token possible (generate then decodes greedily)."""
    import torch
    from transformers import LogitsProcessor

    class RowSampler(LogitsProcessor):
        def __init__(self):
            self.params = [job.request.params for job in jobs]
            self.generators = [torch.Generator(device).manual_seed(request_seed(job.request)) for job in jobs]

        def __call__(self, input_ids, scores):
            chosen = torch.full_like(scores, float("-inf"))
            for row, (p, generator) in enumerate(zip(self.params, self.generators)):
                logits = scores[row].float()
                if (p.presence_penalty or p.frequency_penalty) and input_ids.shape[1] > prompt_width:
                    # OpenAI's definition: presence once per token already generated, frequency per time.
                    tokens, counts = input_ids[row, prompt_width:].unique(return_counts=True)
                    logits = logits.clone()
                    logits[tokens] -= (p.presence_penalty or 0) + (p.frequency_penalty or 0) * counts.to(logits.dtype)
                if p.temperature == 0:
                    token = logits.argmax()
                else:
                    probs = torch.softmax(logits / p.temperature, dim=-1)
                    if p.top_p < 1:  # nucleus: the smallest set of likeliest tokens holding top_p
                        sorted_probs, order = probs.sort(descending=True)
                        outside = sorted_probs.cumsum(0) - sorted_probs >= p.top_p
                        probs = probs.scatter(0, order, sorted_probs.masked_fill(outside, 0))
                    token = torch.multinomial(probs, 1, generator=generator)[0]
                chosen[row, token] = 0
            return chosen

    return RowSampler()


def _row_watch(jobs: list[_Job], prompt_width: int, tokenizer, eos_ids: set[int], closing: threading.Event):
    """A stopping criterion that ends each row on its own (end of text, a stop string, its own
    max_tokens, its request cancelled) and every row when the backend closes; `ends[i]` is how
    many tokens row i generated, `reasons[i]` why it ended (None: not yet)."""
    import torch
    from transformers import StoppingCriteria

    class RowWatch(StoppingCriteria):
        def __init__(self):
            self.ends: list[int | None] = [None] * len(jobs)
            self.reasons: list[str | None] = [None] * len(jobs)

        def __call__(self, input_ids, scores, **kwargs):
            made = input_ids.shape[1] - prompt_width
            last = input_ids[:, -1].tolist()
            for row, job in enumerate(jobs):
                if self.reasons[row] is None:
                    reason = self._reason(job, input_ids[row, prompt_width:], last[row], made)
                    if reason:
                        self.ends[row], self.reasons[row] = made, reason
            if closing.is_set():
                return torch.ones(len(jobs), dtype=torch.bool, device=input_ids.device)
            return torch.tensor([r is not None for r in self.reasons], dtype=torch.bool, device=input_ids.device)

        @staticmethod
        def _reason(job: _Job, generated, last: int, made: int) -> str | None:
            if job.cancelled.is_set():
                return "cancelled"
            if last in eos_ids:
                return "stop"
            if job.stops:  # a stop string ends in the newest token: decode only the tail that can hold it
                tail = tokenizer.decode(generated[-(4 * max(map(len, job.stops)) + 4):], skip_special_tokens=True)
                if any(stop in tail for stop in job.stops):
                    return "stop"
            return "length" if made >= job.limit else None

    return RowWatch()


@contextlib.contextmanager
def _transformers_quiet():
    """transformers' warnings and progress bars off for the block (they are for its own users)."""
    from transformers.utils import logging

    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


def _load(path: Path, adapter: bool, dtype):
    """The model of a folder; a LoRA adapter (a LoRA training's output) is merged into its local base."""
    import json

    from transformers import AutoModelForCausalLM

    if not adapter:
        return AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=dtype)
    from peft import PeftModel

    base = json.loads((path / "adapter_config.json").read_text())["base_model_name_or_path"]
    model = AutoModelForCausalLM.from_pretrained(base, local_files_only=True, dtype=dtype)
    return PeftModel.from_pretrained(model, str(path)).merge_and_unload()


class TransformersBackend:
    name = "transformers"
    max_concurrency = None  # requests queue here and are batched; the client's own limit applies

    def __init__(self, model: str | None, max_batch: int = MAX_BATCH, n_threads: int | None = None):
        if not model:
            raise ConfigError("the transformers backend needs --model FOLDER (a local Hugging Face model folder)")
        path = Path(model).expanduser()
        adapter = not (path / "config.json").is_file() and (path / "adapter_config.json").is_file()
        if not (path / "config.json").is_file() and not adapter:
            raise ConfigError(f"{path} is not a model folder (no config.json): the transformers backend takes "
                              "--model FOLDER, a local Hugging Face model folder or LoRA adapter")
        try:
            import torch
            import transformers
        except ImportError:
            raise ConfigError("the transformers backend needs torch and transformers: pip install 'distill[train]'") from None
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        if n_threads:  # on a busy CPU fewer threads than cores is much faster (OpenMP threads wait spinning)
            torch.set_num_threads(n_threads)
        try:
            with _transformers_quiet():  # no load reports or progress bars on the user's terminal
                self.tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
                self.model = _load(path, adapter, dtype="auto" if self.device == "cuda" else torch.float32)
                self.model = self.model.to(self.device).eval()
        except Exception as err:  # noqa: BLE001 - a broken folder fails in many ways (OSError, ValueError, safetensors...)
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise ConfigError(f"cannot load model folder {path}: {first}") from None
        self.model_name = model
        self.max_batch = max_batch
        self.has_chat_template = bool(self.tokenizer.chat_template)
        # The end of a turn: the model's generation config and its tokenizer may each name one.
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = ({eos} if isinstance(eos, int) else set(eos or ())) | {self.tokenizer.eos_token_id} - {None}
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else min(self.eos_ids, default=0)
        self.max_positions = getattr(self.model.config, "max_position_embeddings", None)
        self._pending: list[_Job] = []
        self._worker: asyncio.Task | None = None
        self._lock = threading.Lock()  # one generate at a time; freeing the model waits for it
        self._closing = threading.Event()
        self._closed = False

    def model_id(self) -> str:
        return self.model_name

    def _job(self, request: Request) -> _Job:
        stops = tuple(request.params.stop)
        prefix, transcript = "", False
        if request.prompt is not None:
            text = request.prompt
        elif self.has_chat_template:
            prefix = request.answer_prefix or ""
            try:
                text = self.tokenizer.apply_chat_template(list(request.messages), tokenize=False, add_generation_prompt=True)
            except Exception as err:  # noqa: BLE001 - a template refuses in its own words (say, no system role)
                raise RejectedError(f"{self.model_name} cannot format these chat messages: {err}") from None
            text += prefix
        else:
            prefix, transcript = request.answer_prefix or "", True
            text = render_transcript(request.messages) + (" " + prefix if prefix else "")
            stops += TRANSCRIPT_STOPS
        # A chat template holds its special tokens (BOS...) already; raw text gets the tokenizer's.
        ids = self.tokenizer(text, add_special_tokens=request.prompt is not None)["input_ids"]
        limit = request.params.max_tokens
        if self.max_positions:
            if len(ids) >= self.max_positions:
                raise RejectedError(f"the prompt has {len(ids)} tokens; {self.model_name} takes at most {self.max_positions}")
            limit = min(limit, self.max_positions - len(ids))
        return _Job(request, ids, stops, prefix, transcript, asyncio.get_running_loop().create_future(), limit)

    async def complete(self, request: Request) -> Response:
        if self._closing.is_set():
            raise Stopped("the transformers backend is closing")
        job = self._job(request)
        self._pending.append(job)
        if self._worker is None:
            self._worker = asyncio.create_task(self._serve())
        try:
            return await job.future
        except asyncio.CancelledError:
            job.cancelled.set()  # its row ends at the next token; nobody takes its answer
            raise

    async def _serve(self) -> None:
        """Generate what waits, a batch at a time, until nothing waits."""
        try:
            while self._pending:
                await asyncio.sleep(0)  # requests sent together all join this batch
                batch = [job for job in self._pending[: self.max_batch] if not job.future.done()]
                del self._pending[: self.max_batch]
                if not batch:
                    continue
                try:
                    answers = await asyncio.to_thread(self._generate, batch)
                except PermanentError as err:
                    answers = [err] * len(batch)
                except Exception as err:  # noqa: BLE001 - each waiter gets the error, the client decides
                    answers = [PermanentError(f"transformers failed: {type(err).__name__}: {err}")] * len(batch)
                for job, answer in zip(batch, answers):
                    if not job.future.done():
                        if isinstance(answer, Exception):
                            job.future.set_exception(answer)
                        else:
                            job.future.set_result(answer)
        finally:
            self._worker = None

    def _generate(self, jobs: list[_Job]) -> list[Response]:
        import torch
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

        width = max(len(job.ids) for job in jobs)
        input_ids = torch.tensor([[self.pad_id] * (width - len(job.ids)) + job.ids for job in jobs], device=self.device)
        mask = torch.tensor([[0] * (width - len(job.ids)) + [1] * len(job.ids) for job in jobs], device=self.device)
        watch = _row_watch(jobs, width, self.tokenizer, self.eos_ids, self._closing)
        # A config of our own: a checkpoint's generation_config (its sampling, penalties) must not change answers.
        config = GenerationConfig(max_new_tokens=max(job.limit for job in jobs), do_sample=False,
                                  pad_token_id=self.pad_id, eos_token_id=sorted(self.eos_ids) or None)
        with self._lock:
            if self._closing.is_set():
                raise Stopped("the transformers backend is closing")
            # Quiet: left padding makes a batch longer than the positions of its rows, which transformers warns of.
            with torch.inference_mode(), _transformers_quiet():
                out = self.model.generate(input_ids=input_ids, attention_mask=mask, generation_config=config,
                                          logits_processor=LogitsProcessorList([_row_sampler(jobs, width, self.device)]),
                                          stopping_criteria=StoppingCriteriaList([watch]))
            if self._closing.is_set():  # cut short: no row's text is its answer
                raise Stopped("the transformers backend is closing")
        answers = []
        for row, job in enumerate(jobs):
            made = watch.ends[row] if watch.ends[row] is not None else out.shape[1] - width
            text = self.tokenizer.decode(out[row, width: width + made], skip_special_tokens=True)
            cuts = [text.find(stop) for stop in job.stops if stop in text]
            text = job.prefix + (text[: min(cuts)] if cuts else text)
            answers.append(Response(
                text=text.strip() if job.transcript else text,
                finish_reason=watch.reasons[row] if watch.reasons[row] in ("stop", "length") else "length",
                usage=Usage(len(job.ids), made),
                model=self.model_name,
            ))
        return answers

    def _close(self) -> None:
        with self._lock:  # after the generate running, if any, has returned
            if not self._closed:
                self._closed = True
                del self.model
                gc.collect()
                if self.device == "cuda":
                    import torch

                    torch.cuda.empty_cache()

    async def aclose(self) -> None:
        """End every row at its next token, wait for generate to return, then free the model."""
        self._closing.set()
        for job in self._pending:
            if not job.future.done():
                job.future.set_exception(Stopped("the transformers backend is closing"))
        self._pending.clear()
        await asyncio.to_thread(self._close)
