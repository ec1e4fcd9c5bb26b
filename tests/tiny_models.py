"""Tiny causal LMs built from a config, with a tokenizer trained here: offline, seconds to train."""

from pathlib import Path

from distill.train.template import ZEPHYR_TEMPLATE


def build_tiny_model(folder: Path, corpus: list[str], chat_template: str | None = ZEPHYR_TEMPLATE) -> Path:
    """A 2-layer Mistral (the Zephyr base architecture) and its tokenizer, saved in `folder`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import MistralConfig, MistralForCausalLM, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<unk>", "<s>", "</s>", "<pad>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>")
    fast.chat_template = chat_template
    fast.save_pretrained(folder)
    config = MistralConfig(
        vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=512,
        bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id,
    )
    MistralForCausalLM(config).save_pretrained(folder)
    return folder


def build_tiny_list_writer(folder: Path, steps: int = 150) -> Path:
    """A tiny chat model trained for seconds to answer with numbered lists of questions, so that
    pipelines which parse lists (UltraChat's openings) go past their first request on it."""
    import random

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rng = random.Random(0)
    questions = ["What is the history of tea?", "How do cats sleep at night?", "Why is the sky blue?",
                 "Where do rivers begin?", "Who wrote the first poem?", "When did people first cook bread?"]
    texts = [f"<|user|>\nWrite a list about {word}.</s>\n<|assistant|>\n"
             + "\n".join(f"{i + 1}. {q}" for i, q in enumerate(rng.sample(questions, 3))) + "</s>"
             for word in ["tea", "cats", "rivers", "poems"] * 20]
    torch.manual_seed(0)  # the model's initial weights
    build_tiny_model(folder, texts + questions * 10)
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModelForCausalLM.from_pretrained(folder)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(steps):
        batch = tokenizer(rng.sample(texts, 8), return_tensors="pt", padding=True)
        model(**batch, labels=batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(folder)
    return folder
