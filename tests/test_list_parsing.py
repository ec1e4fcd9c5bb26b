"""Lists and single items read out of what instruct models write (replies of SmolLM2-135M-Instruct
to the UltraChat list prompts, as measured, and the shapes larger instruct models use)."""

import pytest

from distill.parsing import list_items, one_item


@pytest.mark.parametrize("reply, items", [
    # A preamble with its own colon line, a repeated item, a closing remark after a blank line.
    (("Here is a suggested list of 3 subtopics:\n\nList of 3 Subtopics:\n1. Music and Dance\n2. Music and Culture\n"
      "3. Music and Dance\n\nThe list is incomplete as there are many more topics."), ["Music and Dance", "Music and Culture"]),
    # The list written again after it: the second "1." is text, not a new list.
    (("A question: I'm curious.\n\nHere's a list:\n\n1. How many genres exist?\n2. What is swing?\n\n"
      "The answer to your question is:\n1. How many genres exist?"), ["How many genres exist?", "What is swing?"]),
    ("**1.** Rivers\n**2.** Lakes", ["Rivers", "Lakes"]),
    ('"To start with, here are a few of them:\n\n## 1. "I need an ad for XYZ."\n## 2. "I need an ad for ABC."',
     ["I need an ad for XYZ.", "I need an ad for ABC."]),
    ("**1. Rivers**: how they form\n**2. Lakes**", ["Rivers: how they form", "Lakes"]),
    ("1) Rivers\n2) Lakes", ["Rivers", "Lakes"]),
    ("(1) Rivers\n(2) Lakes", ["Rivers", "Lakes"]),
    ("1 - Rivers\n2 - Lakes\n3 – Seas", ["Rivers", "Lakes", "Seas"]),
    ("1: Rivers\n2: Lakes", ["Rivers", "Lakes"]),
    ("Sure! Here are some:\n- Rivers\n* Lakes\n• Seas\nEnjoy!", ["Rivers", "Lakes", "Seas"]),
    ('1. "Why do rivers meander?"\n2. Question: What is a delta?\n3. “Where do lakes come from?”',
     ["Why do rivers meander?", "What is a delta?", "Where do lakes come from?"]),
    # Numbers inside items, and a range at the start of a line that is no list marker.
    ("1. Why do 2. and 3. differ?\n2. Is 1 - 2 hours enough?", ["Why do 2. and 3. differ?", "Is 1 - 2 hours enough?"]),
    ("Questions: 1. Why? 2. How? 3. When?", ["Why?", "How?", "When?"]),
])
def test_list_items_in_what_instruct_models_write(reply, items):
    assert list_items(reply) == items


def test_a_truncated_list_loses_its_last_item_and_prose_is_no_list():
    assert list_items("1. Rivers\n2. Lakes\n3. Se", truncated=True) == ["Rivers", "Lakes"]
    assert list_items("It takes 1 - 2 hours. Then it is done.") == []


@pytest.mark.parametrize("reply, item", [
    ("What was jazz's beginnings?", "What was jazz's beginnings?"),
    ("Question: What is the origin of jazz?", "What is the origin of jazz?"),
    ("**New question:** What is bebop?", "What is bebop?"),
    ('"Write a poem about the sea for my grandmother\'s 80th birthday."',
     "Write a poem about the sea for my grandmother's 80th birthday."),
    ("Here is a question you might ask:\n\n“How do tides work?”", "How do tides work?"),
    ("1. What is a delta?", "What is a delta?"),
    ("- What is a delta?", "What is a delta?"),
    ("Here is a sample of questions that fit:\n\n1. What is jazz?", "What is jazz?"),
    ("1. What is a delta?\n2. What is an estuary?", "What is a delta?"),  # a list anyway: its first item
    ("Please write a haiku. Keep it light.", "Please write a haiku. Keep it light."),  # one request of two sentences
])
def test_one_item_is_the_reply_alone(reply, item):
    assert one_item(reply) == item


@pytest.mark.parametrize("reply", [
    # Prose of several lines or paragraphs is not one item.
    ("Priya,\n\nI'm always happy to help with historical content. However, I must emphasize that the answer is not "
     "available.\n\nPriya"),
    "SECTION 1\nThe cat sat on the mat.\n\nSECTION 2\nThe cat sat on the mat.",
    "Here is one:",
    "",
    "   \n ",
])
def test_prose_or_nothing_is_no_item(reply):
    assert one_item(reply) is None


def test_a_cut_off_single_item_is_no_item():
    assert one_item("What is the origin of", truncated=True) is None
