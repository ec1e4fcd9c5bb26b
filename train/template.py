"""Chat templates: the tokenizer's, or Zephyr's for a base model that has none.

TRL computes an assistant-only loss from `{% generation %}` markers in the template;
the Zephyr template here has them.
"""

from __future__ import annotations

from distill.errors import ConfigError

# <|system|>, <|user|>, <|assistant|> turns, each ended by the eos token, as Zephyr.
ZEPHYR_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] + eos_token }}{% endgeneration %}"
    "{% else %}{{ message['content'] + eos_token }}{% endif %}"
    "{{ '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)


def prepare(tokenizer, mode: str, assistant_only_loss: bool) -> None:
    """Set the chat template the recipe asks for; refuse an assistant-only loss it cannot give."""
    if mode == "zephyr" or not tokenizer.chat_template:
        tokenizer.chat_template = ZEPHYR_TEMPLATE
    if assistant_only_loss and "generation" not in tokenizer.chat_template:
        raise ConfigError(
            "assistant_only_loss needs a chat template with {% generation %} markers, which this tokenizer's lacks: "
            "set chat_template: zephyr, or assistant_only_loss: false"
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
