"""ROUGE-L novelty (distill.filters.rouge) against the rouge_score package it replaces."""

import math
import random

import pytest
from rouge_score import rouge_scorer, tokenizers

from distill.filters.rouge import NoveltyPool, rouge_l, tokenize

SCORER = rouge_scorer.RougeScorer(["rougeL"])
REFERENCE_TOKENIZER = tokenizers.DefaultTokenizer(use_stemmer=False)

# Small vocabulary (with case and punctuation variants) so that random texts overlap.
WORDS = ["the", "a", "of", "write", "list", "explain", "story", "poem", "data", "why",
         "code", "python", "summary", "email", "five", "ten", "best", "how", "to", "in"]
DECOR = ["", "", "", ",", ".", "!", "?", "'s", "-"]


def reference(target: str, prediction: str) -> float:
    return SCORER.score(target, prediction)["rougeL"].fmeasure


def random_text(rng: random.Random, n: int) -> str:
    words = [rng.choice(WORDS) + rng.choice(DECOR) for _ in range(n)]
    return " ".join(w.capitalize() if rng.random() < 0.1 else w for w in words)


def edit(rng: random.Random, text: str, edits: int) -> str:
    """`text` with `edits` random word substitutions, deletions or insertions."""
    words = text.split()
    for _ in range(edits):
        op = rng.randrange(3)
        if op == 0 and words:
            words[rng.randrange(len(words))] = rng.choice(WORDS)
        elif op == 1 and words:
            del words[rng.randrange(len(words))]
        else:
            words.insert(rng.randrange(len(words) + 1), rng.choice(WORDS))
    return " ".join(words)


TRICKY = [
    "", " ", "\n\t ", "...", "Hello, World!", "hello world", "3.14 is pi; 1e-9 isn't",
    "snake_case and kebab-case and CamelCase", "don't stop-believing!!!", "a  b\n\nc\td",
    "naïve café résumé", "İstanbul", "\u212a Kelvin sign", "Straße", "ǅemal", "ﬁne ﬂow",
    "ｆｕｌｌ width", "½ ² ³ ٣ ५", "emoji 🚀 rocket", "中文 text 123", "ΑΘΗΝΑ", "x_1 y-2 z.3",
    "trailing newline\n", "\u00a0non\u00a0breaking\u2003spaces", "MiXeD 42Answers",
]


@pytest.mark.parametrize("text", TRICKY)
def test_tokenize_matches_rouge_score(text):
    assert tokenize(text) == REFERENCE_TOKENIZER.tokenize(text)


def test_tokenize_matches_rouge_score_on_random_unicode():
    rng = random.Random(1)
    alphabet = "aZ09 _-.,!\n\t\u00e9\u0130\u212a\u00df\u01c5\ufb01\uff21\u00bd\u4e2d\u0391"
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(20)))
        assert tokenize(text) == REFERENCE_TOKENIZER.tokenize(text)


def test_rouge_l_equals_rouge_score():
    rng = random.Random(2)
    pairs = [("", ""), ("", "a b"), ("a b", ""), ("...", "a"), ("a", "a"), ("a b", "b a")]
    for _ in range(400):
        a = random_text(rng, rng.randrange(0, 40))
        b = edit(rng, a, rng.randrange(0, 12)) if rng.random() < 0.6 else random_text(rng, rng.randrange(0, 40))
        pairs.append((a, b))
    for target, prediction in pairs:
        expected = reference(target, prediction)
        got = rouge_l(tokenize(target), tokenize(prediction))
        assert got == expected, (target, prediction)  # bit for bit, not just within 1e-12
        assert rouge_l(tokenize(prediction), tokenize(target)) == expected


def test_rouge_l_long_sequences():
    # Exercise the bit-parallel LCS beyond one machine word.
    rng = random.Random(3)
    for _ in range(20):
        a = random_text(rng, rng.randrange(60, 200))
        b = edit(rng, a, rng.randrange(0, 80))
        assert rouge_l(tokenize(a), tokenize(b)) == reference(a, b)


def brute_force(pool: list[str], candidates: list[str], threshold: float) -> list[bool]:
    """The Self-Instruct loop on rouge_score: keep if every score < threshold, then add."""
    pool, kept = list(pool), []
    for candidate in candidates:
        keep = all(reference(entry, candidate) < threshold for entry in pool)
        if keep:
            pool.append(candidate)
        kept.append(keep)
    return kept


@pytest.mark.parametrize("threshold", [0.7, 0.5, 1.0])
def test_filter_matches_brute_force(threshold):
    rng = random.Random(4)
    pool = [random_text(rng, rng.randrange(4, 16)) for _ in range(40)] + ["", "!!!"]
    candidates: list[str] = []
    for _ in range(200):
        r = rng.random()
        if r < 0.3:
            candidates.append(random_text(rng, rng.randrange(0, 16)))
        else:  # near-duplicates of pool entries or earlier candidates, around the threshold
            source = rng.choice(pool + candidates) if r < 0.8 else rng.choice(candidates or pool)
            candidates.append(edit(rng, source, rng.randrange(0, 5)))
    expected = brute_force(pool, candidates, threshold)
    assert 20 < sum(expected) < len(expected) - 20  # both decisions well represented

    novelty = NoveltyPool(pool, threshold=threshold)
    decisions = novelty.filter(candidates)
    assert [d is None for d in decisions] == expected
    for candidate, match in zip(candidates, decisions):
        if match is not None:
            assert reference(novelty.texts[match], candidate) >= threshold
    assert novelty.texts == pool + [c for c, keep in zip(candidates, expected) if keep]


def test_scores_at_the_threshold():
    # Many (length, length, LCS) give an F-measure equal to a threshold in real numbers;
    # the decision must follow rouge_score's float result, whichever side it rounds to.
    words = [f"w{i}" for i in range(20)]
    for n in range(1, 20):
        target = " ".join(words[:n])
        pools = {t: NoveltyPool([target], threshold=t) for t in (0.7, 2 / 3, 0.75, 0.8, 0.6, 0.5)}
        for m in range(1, 20):
            for lcs in range(1, min(n, m) + 1):
                prediction = " ".join(words[:lcs] + [f"x{i}" for i in range(m - lcs)])
                score = reference(target, prediction)
                for threshold, novelty in pools.items():
                    assert novelty.is_novel(prediction) is (score < threshold), (n, m, lcs, threshold)
                    assert novelty.max_similarity(prediction) == (score, 0)


def test_max_similarity_exact_below_threshold():
    rng = random.Random(5)
    pool = [random_text(rng, rng.randrange(3, 20)) for _ in range(60)]
    novelty = NoveltyPool(pool, threshold=1.0)
    for _ in range(50):
        text = random_text(rng, rng.randrange(1, 20))
        scores = [reference(entry, text) for entry in pool]
        best, index = novelty.max_similarity(text)
        if best < 1.0:
            assert best == max(scores)
            assert index is None if best == 0 else scores[index] == best
        else:
            assert scores[index] == 1.0
        assert novelty.is_novel(text) is (max(scores) < 1.0)


def test_max_similarity_stops_at_threshold():
    novelty = NoveltyPool(["write a poem about the sea", "write a poem about the sea today"], threshold=0.5)
    best, index = novelty.max_similarity("write a poem about the sea")
    assert best >= 0.5 and index in (0, 1)
    assert reference(novelty.texts[index], "write a poem about the sea") == best


def test_pool_growth():
    novelty = NoveltyPool(["Write a poem about the sea."])
    assert len(novelty) == 1
    assert novelty.filter(["write a poem about the sea", "List five fruits.", "list five fruits!"]) == [0, None, 1]
    assert novelty.texts == ["Write a poem about the sea.", "List five fruits."]
    assert novelty.is_novel("List 5 fruits")  # F = 2/3 < 0.7
    assert novelty.max_similarity("list five fruits") == (1.0, 1)

    frozen = NoveltyPool()
    assert frozen.filter(["a b c", "a b c"], add_accepted=False) == [None, None]
    assert len(frozen) == 0 and frozen.max_similarity("a b c") == (0.0, None)
    frozen.add("a b c")
    assert frozen.filter(["a b c"]) == [0]


def test_empty_and_unknown_texts():
    novelty = NoveltyPool(["", "...", "hello world"])
    assert novelty.is_novel("") and novelty.is_novel("!!")
    assert novelty.max_similarity("") == (0.0, None)
    assert novelty.max_similarity("never seen tokens") == (0.0, None)
    assert novelty.filter(["", ""]) == [None, None]  # empty texts never match anything
    assert len(novelty) == 5


@pytest.mark.parametrize("threshold", [0, -0.1, 1.0000001, 2, math.nan])
def test_bad_threshold(threshold):
    with pytest.raises(ValueError):
        NoveltyPool(threshold=threshold)


def test_threshold_one_drops_only_identical_token_sequences():
    novelty = NoveltyPool(["Write a poem."], threshold=1.0)
    assert novelty.filter(["write, a POEM", "write a poem please", "a write poem"]) == [0, None, None]
