"""Chat templates: the tokenizer's, or Zephyr's (`chat_template: zephyr`, or a base model that has none).

TRL computes an assistant-only loss from `{% generation %}` markers in the template;
the Zephyr template here has them. Replacing a tokenizer's own template is never silent:
`prepare` says what it did, the run prints it and the model card records it.

The Zephyr template starts with the tokenizer's BOS token: the handbook tokenized the rendered
text with the tokenizer's special tokens (Mistral's `<s>` first), while TRL 1.x tokenizes a
conversation with the template alone and adds nothing.
"""

from __future__ import annotations

import re

from distill.errors import ConfigError

# <|system|>, <|user|>, <|assistant|> turns, each ended by the eos token, as Zephyr.
ZEPHYR_TEMPLATE = (
    "{% if bos_token %}{{ bos_token }}{% endif %}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] + eos_token }}{% endgeneration %}"
    "{% else %}{{ message['content'] + eos_token }}{% endif %}"
    "{{ '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)
ZEPHYR = "Zephyr's (<|system|>/<|user|>/<|assistant|>)"
# The tag itself, with Jinja's whitespace control ({%- generation -%}, {%+ generation %}): the
# bare word is no evidence, since every template with `add_generation_prompt` contains it.
MARKER = re.compile(r"\{%[-+]?\s*generation\s*[-+]?%\}")

# What prepare did, as one line for the user and one for the model card.
OWN, REPLACED, ADDED = "own", "replaced", "added"
NOTICE = {
    REPLACED: f"chat template: {ZEPHYR}, replacing the tokenizer's own; set chat_template: auto to keep it",
    ADDED: f"chat template: {ZEPHYR}, as the tokenizer has none",
}
CARD = {
    OWN: "the tokenizer's own",
    REPLACED: f"{ZEPHYR}, replacing the tokenizer's own (chat_template: zephyr)",
    ADDED: f"{ZEPHYR}: the starting tokenizer had none",
}


def _default(chat_template) -> str | None:
    """The template apply_chat_template uses: a tokenizer may ship several, by name."""
    if isinstance(chat_template, dict):
        return chat_template.get("default")
    return chat_template


def has_system_turn(chat_template) -> bool:
    """Whether the template renders system turns: the handbook's test before it added an empty one
    (Zephyr's here renders every role, naming none)."""
    template = _default(chat_template)
    return bool(template) and (template == ZEPHYR_TEMPLATE or "system" in template or "<|im_start|>" in template)


def has_markers(chat_template) -> bool:
    template = _default(chat_template)
    return bool(template) and MARKER.search(template) is not None


def _trl_can_patch(tokenizer) -> bool:
    """TRL (1.x, recent) swaps in a marked copy of the templates it knows (Llama 3, Qwen, Gemma, ...)."""
    try:
        from trl.chat_template_utils import get_training_chat_template
    except ImportError:
        return False
    try:
        return get_training_chat_template(tokenizer) is not None
    except Exception:  # "patching is not supported for this template", or a template it cannot render
        return False


def prepare(tokenizer, mode: str, assistant_only_loss: bool) -> str:
    """Set the chat template the recipe asks for; refuse an assistant-only loss it cannot give.

    Returns OWN (the tokenizer's template is kept), REPLACED (Zephyr's replaced it) or ADDED
    (the tokenizer had none); NOTICE and CARD say each in words.
    """
    own = _default(tokenizer.chat_template)
    if not own:
        tokenizer.chat_template, done = ZEPHYR_TEMPLATE, ADDED
    elif mode == "zephyr" and own != ZEPHYR_TEMPLATE:
        tokenizer.chat_template, done = ZEPHYR_TEMPLATE, REPLACED
    else:
        done = OWN
    if assistant_only_loss and not has_markers(tokenizer.chat_template) and not _trl_can_patch(tokenizer):
        raise ConfigError(
            "assistant_only_loss needs a chat template with {% generation %} markers, which this tokenizer's lacks: "
            "set chat_template: zephyr, or assistant_only_loss: false"
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return done
