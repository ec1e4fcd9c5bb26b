"""The vLLM backend against a stand-in engine: vLLM itself needs a GPU and is not installed here."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from distill.backends.base import PermanentError
from distill.backends.vllm_backend import VLLMBackend, sampling_kwargs
from distill.errors import ConfigError
from distill.request import Request, SamplingParams


class StandInTokenizer:
    def __init__(self, chat_template: str | None = "{{ messages }}"):
        self.chat_template = chat_template
        self.template_calls: list[dict] = []
        self.encode_calls: list[dict] = []

    def apply_chat_template(self, messages, tokenize=True, add_generation_prompt=False):
        if self.chat_template is None:
            raise ValueError("tokenizer.chat_template is not set")
        self.template_calls.append({"messages": messages, "tokenize": tokenize, "add_generation_prompt": add_generation_prompt})
        text = "".join(f"<{m['role']}>{m['content']}" for m in messages)
        return text + ("<assistant>" if add_generation_prompt else "")

    def encode(self, text, add_special_tokens=True):
        self.encode_calls.append({"text": text, "add_special_tokens": add_special_tokens})
        return ([0] if add_special_tokens else []) + [ord(c) for c in text]


def output(text, finish_reason=None, finished=False, prompt_len=5):
    completion = SimpleNamespace(text=text, finish_reason=finish_reason, token_ids=list(range(len(text.split()))))
    return SimpleNamespace(outputs=[completion], prompt_token_ids=list(range(prompt_len)), finished=finished)


class StandInEngine:
    """Streams a partial then a final output per request; counts generators running at once."""

    def __init__(self, reply="the final answer", finish_reason="stop", tokenizer=None, hold: asyncio.Event | None = None):
        self.reply = reply
        self.finish_reason = finish_reason
        self.tokenizer = tokenizer or StandInTokenizer()
        self.hold = hold  # when set, every generation waits for it before finishing
        self.calls: list[tuple] = []
        self.active = 0
        self.max_active = 0
        self.aborted: list[str] = []
        self.shut_down = False
        self.tokenizer_fetches = 0

    async def get_tokenizer(self):
        self.tokenizer_fetches += 1
        return self.tokenizer

    async def generate(self, prompt, sampling_params, request_id):
        self.calls.append((prompt, sampling_params, request_id))
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            yield output(self.reply.split()[0])
            if self.hold is not None:
                await self.hold.wait()
            yield output(self.reply, self.finish_reason, finished=True)
        finally:
            self.active -= 1

    async def abort(self, request_id):
        self.aborted.append(request_id)

    def shutdown(self):
        self.shut_down = True


def backend_for(engine) -> VLLMBackend:
    return VLLMBackend("org/model", engine=engine, make_sampling_params=lambda **kw: kw)


def test_chat_goes_through_the_template_with_a_generation_prompt():
    engine = StandInEngine()
    backend = backend_for(engine)
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]

    async def main():
        await backend.complete(Request.chat("org/model", messages))
        await backend.complete(Request.chat("org/model", messages, sample=1))

    asyncio.run(main())
    tok = engine.tokenizer
    assert tok.template_calls[0] == {"messages": messages, "tokenize": False, "add_generation_prompt": True}
    rendered = "<system>be brief<user>hi<assistant>"
    # The template holds the special tokens already: no second BOS.
    assert tok.encode_calls[0] == {"text": rendered, "add_special_tokens": False}
    assert engine.calls[0][0] == {"prompt_token_ids": [ord(c) for c in rendered]}
    assert engine.tokenizer_fetches == 1  # fetched once, then cached


def test_plain_prompt_passes_through_as_is():
    engine = StandInEngine()
    asyncio.run(backend_for(engine).complete(Request.text("org/model", "Once upon a time")))
    assert engine.calls[0][0] == "Once upon a time"
    assert engine.tokenizer.template_calls == []


def test_sampling_params_mapping():
    params = SamplingParams(temperature=0.3, top_p=0.9, max_tokens=77, stop=("\n\n", "###"), seed=11)
    expected = {"temperature": 0.3, "top_p": 0.9, "max_tokens": 77, "stop": ["\n\n", "###"], "seed": 11}
    assert sampling_kwargs(params) == expected
    assert sampling_kwargs(SamplingParams())["seed"] is None

    engine = StandInEngine()
    asyncio.run(backend_for(engine).complete(Request.text("org/model", "x", params)))
    assert engine.calls[0][1] == expected


def test_response_text_usage_and_finish_reason():
    engine = StandInEngine(reply="one two three four")
    backend = backend_for(engine)
    response = asyncio.run(backend.complete(Request.text("org/model", "x")))
    assert response.text == "one two three four"  # the final output, not the partial one
    assert response.finish_reason == "stop"
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (5, 4)
    assert response.model == "org/model" == backend.model_id()
    assert backend.name == "vllm" and backend.max_concurrency is None


def test_length_finish_reason_is_kept():
    response = asyncio.run(backend_for(StandInEngine(finish_reason="length")).complete(Request.text("org/model", "x")))
    assert response.finish_reason == "length"


def test_missing_finish_reason_reads_stop():
    response = asyncio.run(backend_for(StandInEngine(finish_reason=None)).complete(Request.text("org/model", "x")))
    assert response.finish_reason == "stop"


def test_concurrent_calls_are_all_submitted_before_any_finishes():
    n = 24

    async def main():
        engine = StandInEngine(hold=asyncio.Event())
        backend = backend_for(engine)
        tasks = [asyncio.create_task(backend.complete(Request.text("org/model", f"p{i}"))) for i in range(n)]

        async def all_running():
            while engine.active < n:
                await asyncio.sleep(0)

        await asyncio.wait_for(all_running(), timeout=5)  # a batching or serial backend never gets here
        engine.hold.set()
        responses = await asyncio.gather(*tasks)
        return engine, responses

    engine, responses = asyncio.run(main())
    assert engine.max_active == n
    assert len(responses) == n
    ids = [request_id for _, _, request_id in engine.calls]
    assert len(set(ids)) == n  # a unique id per call


def test_request_ids_differ_between_backends():
    a, b = StandInEngine(), StandInEngine()
    asyncio.run(backend_for(a).complete(Request.text("org/model", "x")))
    asyncio.run(backend_for(b).complete(Request.text("org/model", "x")))
    assert a.calls[0][2] != b.calls[0][2]


def test_no_chat_template_is_a_permanent_error_pointing_to_plain_text():
    backend = backend_for(StandInEngine(tokenizer=StandInTokenizer(chat_template=None)))
    with pytest.raises(PermanentError, match="plain-text prompts"):
        asyncio.run(backend.complete(Request.chat("org/model", [{"role": "user", "content": "hi"}])))


def test_engine_error_becomes_permanent_error():
    class Broken(StandInEngine):
        async def generate(self, prompt, sampling_params, request_id):
            yield output("partial")
            raise RuntimeError("CUDA out of memory")

    with pytest.raises(PermanentError, match="CUDA out of memory"):
        asyncio.run(backend_for(Broken()).complete(Request.text("org/model", "x")))


def test_cancellation_aborts_the_request_in_the_engine():
    async def main():
        engine = StandInEngine(hold=asyncio.Event())
        task = asyncio.create_task(backend_for(engine).complete(Request.text("org/model", "x")))
        while engine.active < 1:
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return engine

    engine = asyncio.run(main())
    assert engine.aborted == [engine.calls[0][2]]
    assert engine.active == 0


def test_aclose_shuts_the_engine_down():
    engine = StandInEngine()
    asyncio.run(backend_for(engine).aclose())
    assert engine.shut_down


def test_importing_the_module_does_not_import_vllm():
    code = "import sys, distill.backends.vllm_backend; assert 'vllm' not in sys.modules, 'vllm imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def test_without_vllm_construction_is_a_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` fail even where it is installed
    with pytest.raises(ConfigError) as info:
        VLLMBackend("org/model")
    assert str(info.value) == "the vllm backend needs vLLM: pip install 'distill[vllm]' on a machine with a GPU"


def test_a_request_vllm_cannot_take_is_rejected_not_fatal():
    from distill.backends.base import RejectedError

    class TooLong(StandInEngine):
        def generate(self, prompt, params, request_id):
            raise ValueError("prompt is longer than max_model_len")

    backend = VLLMBackend("m", engine=TooLong(), make_sampling_params=dict)
    with pytest.raises(RejectedError, match="max_model_len"):
        asyncio.run(backend.complete(Request.text("m", "x")))


def test_json_schema_becomes_structured_output():
    engine = StandInEngine()
    backend = VLLMBackend("m", engine=engine, make_sampling_params=lambda **kw: kw, make_structured=lambda schema: ("json", schema))
    schema = {"type": "object"}
    asyncio.run(backend.complete(Request.chat("m", [{"role": "user", "content": "rate"}], json_schema=schema)))
    asyncio.run(backend.complete(Request.chat("m", [{"role": "user", "content": "plain"}])))
    first, second = (call[1] for call in engine.calls)
    assert first["structured_outputs"] == ("json", schema) and "structured_outputs" not in second
