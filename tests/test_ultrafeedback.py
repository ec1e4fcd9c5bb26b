"""UltraFeedback: a model pool, a scripted judge, binarization, position bias, re-binarizing."""

import json
import re
from collections import Counter, defaultdict
from types import SimpleNamespace

import datasets
import pytest
from conftest import assert_one_line_error, kill_after_answers, start_distill, write_jsonl

from distill.cache import RequestCache
from distill.pipelines import ultrafeedback as uf
from distill.schemas import PREFERENCE
from distill.testing.openai_server import LoopbackServer

POOL = "m1,m2,m3,m4,m5"


def quality(text: str) -> int:
    match = re.search(r"quality=(\d+)", text)
    return int(match.group(1)) if match else 3


def texts_of(prompt: str) -> list[str]:
    return re.findall(r"^Text \d+:\n(.*)$", prompt, re.MULTILINE)


def judge_json(prompt: str, rate) -> str:
    entries = []
    for position, text in enumerate(texts_of(prompt), start=1):
        entry = {"text": position, "rating": rate(text, position), "rationale": f"seen at {position}"}
        if "truthfulness" in prompt.split("\n")[0]:
            entry["type"] = "no hallucination"
        if "helpful" in prompt.split("\n")[0]:
            entry["type"] = "clear and relevant"
        entries.append(entry)
    return json.dumps({"ratings": entries})


def teacher(rate=lambda text, position: quality(text), honesty_na=False, critique=None):
    """Pool models answer with their quality; the judge rates what it reads."""

    def reply(messages, model):
        prompt = messages[-1]["content"]
        if prompt.startswith("You are judging"):
            if honesty_na and "honesty" in prompt.split("\n")[0]:
                return judge_json(prompt, lambda text, position: "N/A")
            return judge_json(prompt, rate)
        if prompt.startswith("You are a demanding teacher"):
            answer = prompt.split("Answer:\n")[1].split("\n\nReply")[0]
            score = critique(answer) if critique else 2 * quality(answer)
            return json.dumps({"feedback": "be more specific", "overall_score": score})
        level = int(model[1:]) if re.fullmatch(r"m\d", model) else 3
        return f"An answer to '{prompt}' by {model}, quality={level}."

    return lambda request: reply(list(request.messages), request.model)


@pytest.fixture
def prompts(tmp_path):
    return write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": f"Question {i}: how do rivers form?", "source": "flan" if i % 2 else "sharegpt"}
                                                    for i in range(10)])


def rate(cli, tmp_path, monkeypatch, prompts, *args, reply=None, name="run"):
    monkeypatch.setattr("distill.backends.fake.echo_reply", reply or teacher())
    out = tmp_path / name
    result = cli("rate", "ultrafeedback", "--input", prompts, "--backend", "fake", "--models", POOL, "-o", out, "-q", *args)
    return result, out


def records(out):
    return [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]


def test_pool_judge_and_binarized_pairs(cli, tmp_path, monkeypatch, prompts):
    result, out = rate(cli, tmp_path, monkeypatch, prompts, "--test-size", "0.2")
    assert result.code == 0, result.err
    loaded = datasets.load_dataset(str(out))
    assert set(loaded) == {"train_prefs", "test_prefs", "train_sft", "test_sft", "train_gen", "test_gen"}
    assert loaded["train_prefs"].num_rows == 8 and loaded["test_prefs"].num_rows == 2
    assert list(loaded["train_prefs"].features)[:7] == list(PREFERENCE)
    for name, feature in PREFERENCE.items():
        assert loaded["train_prefs"].features[name] == feature
    for row in loaded["train_prefs"]:
        # The judge rated by the answers' quality, so the best model of the four wins.
        assert row["score_chosen"] == int(row["chosen_model"][1:]) > row["score_rejected"] == int(row["rejected_model"][1:])
        assert row["chosen"][0] == {"content": row["prompt"], "role": "user"} and row["messages"] == row["chosen"]
        assert row["rejected"][0] == row["chosen"][0] and row["rejected"][1]["role"] == "assistant"
    sft = {r["prompt_id"]: r for r in loaded["train_sft"]}
    assert all(sft[r["prompt_id"]]["messages"] == r["chosen"] for r in loaded["train_prefs"])
    for record in records(out):
        models = [c["model"] for c in record["completions"]]
        assert len(set(models)) == 4 and set(models) <= set(POOL.split(","))
        for c in record["completions"]:
            assert c["principle"] in uf.PRINCIPLES
            assert c["system_prompt"] in uf.word_list("ultrafeedback", f"principles/{c['principle']}.txt")
        # The original's four aspects, each rated in one judge call for all four answers.
        assert list(record["aspects"]) == ["instruction_following", "honesty", "truthfulness", "helpfulness"]
        for result in record["aspects"].values():
            assert sorted(result["order"]) == [0, 1, 2, 3]
            # Ratings map back from shown positions to the right completions.
            assert [r["rating"] for r in result["ratings"]] == [quality(c["response"]) for c in record["completions"]]
    orders = {tuple(r["aspects"][a]["order"]) for r in records(out) for a in uf.ASPECTS}
    assert len(orders) > 5  # shuffled, not one fixed order
    companion = datasets.load_dataset(str(out), "completions", split="train")
    assert companion.num_rows == 40
    row = companion[0]
    assert {"model", "principle", "response", "score", "helpfulness_rating", "helpfulness_position", "truthfulness_type"} <= set(row)
    card = (out / "README.md").read_text()
    assert "Cui et al. 2023" in card and "chosen is the best, rejected a random other answer" in card


def test_the_same_run_follows_the_same_seeded_path(cli, tmp_path, monkeypatch, prompts):
    rate(cli, tmp_path, monkeypatch, prompts, name="a")
    rate(cli, tmp_path, monkeypatch, prompts, name="b")
    by_id = lambda out: sorted(records(out), key=lambda r: int(r["id"]))  # appended as they finish
    assert by_id(tmp_path / "a") == by_id(tmp_path / "b")


def test_principles_per_source(cli, tmp_path, monkeypatch, prompts):
    config = tmp_path / "uf.yaml"
    config.write_text("principles_by_source:\n  flan: {honesty: 1}\n  sharegpt: {verbalized_calibration: 1}\n")
    result, out = rate(cli, tmp_path, monkeypatch, prompts, "--config", config, "--source-column", "source")
    assert result.code == 0, result.err
    by_source = {(r["source"], c["principle"]) for r in records(out) for c in r["completions"]}
    assert by_source == {("flan", "honesty"), ("sharegpt", "verbalized_calibration")}


def test_a_principle_is_drawn_for_each_completion_from_its_sources_mix(cli, tmp_path, monkeypatch):
    """The original drew a principle for each model's answer, with a mix per prompt source; the
    input's `source` column picks the mix without being named."""
    sources = ["evol_instruct", "truthful_qa", "flan_v2_cot", "sharegpt", "a_source_of_mine"]
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": f"Question {i}: how do tides work?", "source": sources[i % 5]}
                                                 for i in range(30)])
    result, out = rate(cli, tmp_path, monkeypatch, prompts)
    assert result.code == 0, result.err
    by_source: dict[str, set] = defaultdict(set)
    mixed = 0
    for record in records(out):
        principles = [c["principle"] for c in record["completions"]]
        by_source[record["source"]].update(principles)
        mixed += len(set(principles)) > 1
    assert by_source["evol_instruct"] == {"helpfulness"}
    assert {"truthfulness", "honesty"} <= by_source["truthful_qa"] <= {"truthfulness", "honesty", "verbalized_calibration"}
    assert by_source["flan_v2_cot"] <= {"helpfulness", "verbalized_calibration"}
    assert {"helpfulness", "truthfulness"} <= by_source["sharegpt"] and {"helpfulness"} < by_source["a_source_of_mine"]
    assert mixed > 5  # the answers to one prompt have principles of their own


ORIGINAL_MIXES = {  # OpenBMB/UltraFeedback, src/comparison_data_generation/main.py; honesty turns calibration 1 in 10
    "sharegpt": {"helpfulness": 3 / 5, "truthfulness": 1 / 5, "honesty": 0.9 / 5, "verbalized_calibration": 0.1 / 5},
    "ultrachat": {"helpfulness": 3 / 5, "truthfulness": 1 / 5, "honesty": 0.9 / 5, "verbalized_calibration": 0.1 / 5},
    "flan": {"helpfulness": 4 / 5, "verbalized_calibration": 1 / 5},
    "flan_v2_niv2": {"helpfulness": 4 / 5, "verbalized_calibration": 1 / 5},
    "evol_instruct": {"helpfulness": 1.0},
    "truthful_qa": {"honesty": 0.9 / 2, "truthfulness": 1 / 2, "verbalized_calibration": 0.1 / 2},
    "false_qa": {"honesty": 0.9 / 2, "truthfulness": 1 / 2, "verbalized_calibration": 0.1 / 2},
}


def test_the_principle_mixes_are_the_originals():
    """Drawn many times, each source's principles come out in the original's proportions; a prompt
    of no listed source gets the general chat mix."""
    config = uf.UltraFeedbackConfig(input="x", output="y", models=POOL)
    method = uf.UltraFeedback(config, SimpleNamespace(model="judge"))
    draws = 4000
    for source, expected in {**ORIGINAL_MIXES, None: ORIGINAL_MIXES["sharegpt"], "elsewhere": ORIGINAL_MIXES["sharegpt"]}.items():
        counts = Counter(method.principle(f"prompt {i}", source, "m1")[0] for i in range(draws))
        for name in uf.PRINCIPLES:
            assert abs(counts[name] / draws - expected.get(name, 0)) < 0.03, (source, name, counts)


def test_as_many_system_prompts_per_principle_as_the_original():
    """main.py has eleven phrasings of helpfulness, honesty and truthfulness, and one of
    verbalized calibration; distill's are its own words, as many."""
    counts = {p: len(uf.word_list("ultrafeedback", f"principles/{p}.txt")) for p in uf.PRINCIPLES}
    assert counts == {"helpfulness": 11, "honesty": 11, "truthfulness": 11, "verbalized_calibration": 1}


def test_the_truthfulness_judge_sees_the_reference_answers(cli, tmp_path, monkeypatch):
    """As the original's truthfulness annotation had "world knowledge": TruthfulQA's correct and
    incorrect answers, and FalseQA's false premise; prompts without references get no block."""
    prompts = write_jsonl(tmp_path / "p.jsonl", [
        {"prompt": "Question 0: what happens if you swallow gum?", "source": "truthful_qa",
         "correct_answers": ["It passes through you", "Nothing much"], "incorrect_answers": ["It stays for seven years"]},
        {"prompt": "Question 1: why is the sun cold?", "source": "false_qa", "correct_answers": ["None"],
         "incorrect_answers": ["None"]},
        {"prompt": "Question 2: how do rivers form?", "source": "sharegpt", "correct_answers": ["None"],
         "incorrect_answers": ["None"]},
    ])
    shown: dict[tuple[str, str], str] = {}

    def judge(request):
        prompt = request.messages[-1]["content"]
        if prompt.startswith("You are judging"):
            aspect = next(a for a in ("truthfulness", "honesty", "helpful", "follows") if a in prompt.split("\n")[0])
            shown[(prompt.split("Instruction:\n")[1][:10], aspect)] = prompt
        return teacher()(request)

    result, out = rate(cli, tmp_path, monkeypatch, prompts, reply=judge)
    assert result.code == 0, result.err
    assert len(shown) == 12
    truthful = shown[("Question 0", "truthfulness")]
    assert "Answers known to be correct: It passes through you / Nothing much" in truthful
    assert "Answers known to be wrong: It stays for seven years" in truthful and "false premise" not in truthful
    false_premise = shown[("Question 1", "truthfulness")]
    assert "The question rests on a false premise." in false_premise and "Answers known" not in false_premise
    assert not [key for key, prompt in shown.items() if "Reference knowledge" in prompt and key[1] != "truthfulness"]
    assert not [key for key, prompt in shown.items() if "Reference knowledge" in prompt and key[0] == "Question 2"]
    assert {r["prompt"][:10]: r.get("references") for r in records(out)}["Question 0"]["incorrect"] == ["It stays for seven years"]


def test_sampling_is_the_originals(cli, tmp_path, monkeypatch, prompts):
    """Answers at temperature 1, top-p 1, 1024 tokens; the judge at temperature 0, top-p 0.6, 500
    tokens per aspect and 1024 per critique, as the original annotated; the critique knows the
    principle the answer was given."""
    asked = []

    def recorded(request):
        asked.append(request)
        return teacher()(request)

    result, out = rate(cli, tmp_path, monkeypatch, prompts, "-n", "2", "--critique", reply=recorded)
    assert result.code == 0, result.err
    kinds = defaultdict(list)
    for request in asked:
        first = request.messages[-1]["content"]
        kinds["judge" if first.startswith("You are judging") else "critique" if first.startswith("You are a demanding")
              else "answer"].append(request)
    settings = {kind: {(r.params.temperature, r.params.top_p, r.params.max_tokens) for r in found}
                for kind, found in kinds.items()}
    assert settings == {"answer": {(1.0, 1.0, 1024)}, "judge": {(0.0, 0.6, 500)}, "critique": {(0.0, 0.6, 1024)}}
    assert len(kinds["answer"]) == len(kinds["judge"]) == len(kinds["critique"]) == 8
    assert all(r.messages[0]["role"] == "system" and "rate each one separately" in r.messages[0]["content"]
               for r in kinds["judge"])
    systems = {c["system_prompt"] for record in records(out) for c in record["completions"]}
    notes = {r.messages[-1]["content"].split("The student was also told: ")[1].split("\n")[0] for r in kinds["critique"]}
    assert notes == systems


def test_honesty_may_be_not_applicable(cli, tmp_path, monkeypatch, prompts):
    result, out = rate(cli, tmp_path, monkeypatch, prompts, reply=teacher(honesty_na=True))
    assert result.code == 0, result.err
    record = records(out)[0]
    assert all(r["na"] and r["rating"] is None for r in record["aspects"]["honesty"]["ratings"])
    # The mean leaves N/A out: three aspects, each the completion's quality.
    assert uf.scores(record, "mean") == [float(quality(c["response"])) for c in record["completions"]]


def test_unparsable_replies_are_retried_then_kept_raw_with_null_ratings(cli, tmp_path, monkeypatch, prompts):
    calls = {}

    def flaky(request):
        prompt = request.messages[-1]["content"]
        if prompt.startswith("You are judging"):
            key = (prompt.split("\n")[0], texts_of(prompt)[0][:40])
            calls[key] = calls.get(key, 0) + 1
            if "Question 3:" in prompt:
                return "I think they are all rather good."  # never parses
            if "honesty" in prompt.split("\n")[0] and request.sample == 0:
                return '{"ratings": [{"text": 1, "rating": 4'  # cut off: parses on the retry
        return teacher()(request)

    result, out = rate(cli, tmp_path, monkeypatch, prompts, "--parse-retries", "2", reply=flaky)
    assert result.code == 0, result.err
    by_prompt = {r["prompt"].split(":")[0]: r for r in records(out)}
    broken = by_prompt["Question 3"]["aspects"]["helpfulness"]
    assert broken["ratings"] == [None] * 4 and broken["attempts"] == 3 and broken["raw"] == "I think they are all rather good."
    assert by_prompt["Question 0"]["aspects"]["honesty"]["attempts"] == 2
    assert uf.scores(by_prompt["Question 3"], "mean") == [None] * 4  # never a silent 0
    stats = json.loads((out / "stats.json").read_text())
    assert stats["postprocess"]["judge_unparsed"] == 4
    assert {f["name"]: f["removed"] for f in stats["filters"]}["fewer than two rated completions"] == 1
    assert datasets.load_dataset(str(out), split="train_prefs").num_rows == 9


def test_swap_debiasing_shows_and_evens_out_position_bias(cli, tmp_path, monkeypatch, prompts):
    biased = teacher(rate=lambda text, position: min(5, quality(text) + (2 if position == 1 else 0)))
    result, out = rate(cli, tmp_path, monkeypatch, prompts, "--debias", "swap", "--models", "m2,m3,m4,m5", reply=biased)
    assert result.code == 0, result.err
    record = records(out)[0]
    for aspect in uf.ASPECTS:
        assert record["swapped"][aspect]["order"] == record["aspects"][aspect]["order"][::-1]
    bias = json.loads((out / "stats.json").read_text())["postprocess"]["position_bias"]
    by_position = bias["mean_rating_by_position"]
    assert by_position["1"] > by_position["2"] and 0 <= bias["swap_agreement"] < 1 and bias["swap_pairs"] == 40
    # Averaged over both orders, the bonus of being shown first is shared: m5 still wins.
    for row in datasets.load_dataset(str(out), split="train_prefs"):
        assert row["chosen_model"] == "m5"


def test_ties_are_kept_unless_dropped(cli, tmp_path, monkeypatch, prompts):
    """As ultrafeedback_binarized was built, rejected is any other answer, even one that scores
    as high as chosen; --drop-ties draws it from the lower-scored answers only."""
    flat = teacher(rate=lambda text, position: 3)
    kept, out = rate(cli, tmp_path, monkeypatch, prompts, reply=flat)
    assert kept.code == 0, kept.err
    assert all(r["score_chosen"] == r["score_rejected"] == 3 for r in datasets.load_dataset(str(out), split="train_prefs"))
    assert "rejected may score as high as chosen" in (out / "README.md").read_text()
    dropped = rate(cli, tmp_path, monkeypatch, prompts, "--drop-ties", reply=flat)[0]
    assert_one_line_error(dropped, "survived post-processing", "completions/")
    stats = json.loads((out / "stats.json").read_text())
    assert {f["name"]: f["removed"] for f in stats["filters"]}["no answer scored below the best (--drop-ties)"] == 10
    # What was paid for is exported all the same: every completion with its ratings.
    assert len(datasets.load_dataset(str(out), "completions", split="train")) == 40
    assert not (out / "data").exists()
    # Two answers tie for best (m4 and m5 both read as 4): --drop-ties rejects a lower one.
    capped = teacher(rate=lambda text, position: min(4, quality(text)))
    lower, out = rate(cli, tmp_path, monkeypatch, prompts, "--drop-ties", reply=capped, name="capped")
    assert lower.code == 0, lower.err
    pairs = datasets.load_dataset(str(out), split="train_prefs").to_list()
    assert len(pairs) == 10 and all(r["score_rejected"] < r["score_chosen"] for r in pairs)
    tied = [r for r in records(out) if {"m4", "m5"} <= {c["model"] for c in r["completions"]}]
    assert tied  # the case above did happen


def test_binarize_again_without_asking_any_model(cli, tmp_path, monkeypatch, prompts):
    result, out = rate(cli, tmp_path, monkeypatch, prompts, "--critique")
    assert result.code == 0, result.err
    cached = len(RequestCache(out / "cache.sqlite"))
    # The card says which rule made the pairs: by default the Zephyr paper's mean of the aspects.
    assert "the mean of its aspect ratings, N/A left out (`--score mean`: the rule the Zephyr paper states)" in (
        out / "README.md").read_text()

    def no_model(request):
        raise AssertionError("binarize must not call a model")

    monkeypatch.setattr("distill.backends.fake.echo_reply", no_model)
    lowest = cli("binarize", out, "--rejected", "lowest")
    assert lowest.code == 0, lowest.err
    rows = datasets.load_dataset(str(out), split="train_prefs").to_list()
    assert all(r["rejected_model"] == min(r["rejected_model"], r["chosen_model"]) for r in rows)
    pairs = {r["prompt_id"]: (r["chosen_model"], r["rejected_model"]) for r in rows}
    for record in records(out):
        models = sorted(c["model"] for c in record["completions"])
        assert pairs[record["prompt_id"]] == (models[-1], models[0])
    overall = cli("binarize", out, "--score", "overall")
    assert overall.code == 0, overall.err
    assert {r["score_chosen"] for r in datasets.load_dataset(str(out), split="train_prefs")} <= {2.0 * q for q in range(1, 6)}
    # ... or the card's: the critique's overall score, as the script of ultrafeedback_binarized had it.
    assert "the critique's overall score (`--score overall`: the rule of the script that built " \
           "HuggingFaceH4/ultrafeedback_binarized)" in (out / "README.md").read_text()
    helpfulness = cli("binarize", out, "--score", "helpfulness", "--test-size", "3")
    assert helpfulness.code == 0 and datasets.load_dataset(str(out), split="test_prefs").num_rows == 3
    assert len(RequestCache(out / "cache.sqlite")) == cached
    assert "helpfulness rating" in (out / "README.md").read_text()
    assert_one_line_error(cli("binarize", out, "--score", "charm"), "--score")
    assert_one_line_error(cli("binarize", tmp_path / "nowhere"), "not a run directory")


def test_critique_scores_1_and_10_stay_themselves(cli, tmp_path, monkeypatch, prompts):
    extremes = teacher(critique=lambda answer: 10 if "quality=5" in answer else 1)
    result, out = rate(cli, tmp_path, monkeypatch, prompts, "--critique", "--score", "overall", "--models", "m2,m3,m4,m5",
                       reply=extremes)
    assert result.code == 0, result.err
    for record in records(out):
        for completion, critique in zip(record["completions"], record["critiques"]):
            assert critique["overall_score"] == (10 if completion["model"] == "m5" else 1)
    for row in datasets.load_dataset(str(out), split="train_prefs"):
        assert (row["score_chosen"], row["score_rejected"]) == (10.0, 1.0)


@pytest.mark.parametrize("args, needle", [
    (["--models", "m1,m2"], "at least 4 distinct models"),
    (["--score", "overall"], "--critique"),
    (["--principles", "kindness=1"], "kindness"),
    (["--source-column", "origin"], "'origin'"),
    (["--reference-column", "answers"], "'answers'"),
], ids=["small-pool", "overall-needs-critique", "unknown-principle", "missing-source-column", "missing-reference-column"])
def test_bad_options(cli, tmp_path, monkeypatch, prompts, args, needle):
    result, _ = rate(cli, tmp_path, monkeypatch, prompts, *args)
    assert_one_line_error(result, needle)


def test_judge_on_its_own_endpoint(cli, tmp_path, monkeypatch, prompts):
    monkeypatch.setattr("distill.backends.fake.echo_reply", teacher())
    judged = []

    def judge(body):
        judged.append(body["model"])
        assert body["response_format"]["type"] == "json_schema"  # structured output where the backend has it
        return teacher()(type("R", (), {"messages": body["messages"], "model": body["model"]})())

    with LoopbackServer(reply=judge) as server:
        result = cli("rate", "ultrafeedback", "--input", prompts, "-n", "2", "--backend", "fake", "--models", POOL,
                     "--judge", "big-judge", "--judge-base-url", server.url, "--judge-api-key-env", "JUDGE_KEY",
                     "-o", tmp_path / "run", "-q", env={"JUDGE_KEY": "k"})
    assert result.code == 0, result.err
    assert judged and set(judged) == {"big-judge"} and len(judged) == 2 * 4
    stats = json.loads((tmp_path / "run" / "stats.json").read_text())
    assert set(stats["models"]) == {*POOL.split(","), "big-judge"}


def test_killed_run_resumes_without_rating_again(tmp_path):
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": f"Question {i}: why?"} for i in range(24)])

    def reply(body):
        return teacher()(type("R", (), {"messages": body["messages"], "model": body["model"]})())

    args = ["rate", "ultrafeedback", "--input", prompts, "--backend", "openai", "--model", "judge", "--models",
            POOL, "--concurrency", "4", "-q"]

    def start(server, out):
        return start_distill(*args, "--base-url", server.url, "-o", out, env={"OPENAI_API_KEY": "k"})

    with LoopbackServer(reply=reply, latency=0.02) as server:
        kill_after_answers(start(server, tmp_path / "killed"), server, 60)
        assert start(server, tmp_path / "killed").wait(120) == 0
        assert sum(count - 1 for count in server.stats.answered.values()) <= 4  # only what was in flight
        assert start(server, tmp_path / "whole").wait(120) == 0
    killed = datasets.load_dataset(str(tmp_path / "killed"), split="train_prefs").to_list()
    assert killed == datasets.load_dataset(str(tmp_path / "whole"), split="train_prefs").to_list() and len(killed) == 24


def test_trl_dpo_trainer_trains_on_the_pairs(cli, tmp_path, monkeypatch, prompts):
    """TRL 1.x takes `chosen`/`rejected` with the prompt implicit in them; its explicit
    `prompt` must be a chat too, which ultrafeedback_binarized's string is not."""
    pytest.importorskip("trl")
    from tiny_models import build_tiny_model
    from trl import DPOConfig, DPOTrainer

    result, out = rate(cli, tmp_path, monkeypatch, prompts)
    assert result.code == 0, result.err
    pairs = datasets.load_dataset(str(out), split="train_prefs")
    corpus = [m["content"] for row in pairs for m in row["chosen"] + row["rejected"]]
    model = build_tiny_model(tmp_path / "tiny", corpus)
    args = DPOConfig(output_dir=str(tmp_path / "dpo"), max_steps=2, per_device_train_batch_size=2, max_length=128,
                     use_cpu=True, bf16=False, report_to=[], save_strategy="no")
    trainer = DPOTrainer(model=str(model), args=args, train_dataset=pairs.select_columns(["chosen", "rejected"]))
    assert trainer.train().training_loss > 0
