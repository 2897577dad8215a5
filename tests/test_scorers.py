"""Every built-in scorer against hand-worked examples, user scorers, chance scores and reference checks."""

import json
from pathlib import Path

import pytest

from trainers.recipe import Scoring
from trainers.scorers import (
    BUILTIN_SCORERS,
    ScoringError,
    chance_scores,
    deterministic,
    make_scorer,
    normalize,
    reference_problems,
    source_digest,
    squad_tokens,
)

LONG = " ".join(["word"] * 5000)


def score(name: str, completion: str, reference: str, **row) -> float:
    return BUILTIN_SCORERS[name].function("prompt", completion, reference, **row)


@pytest.mark.parametrize(
    "completion, reference, expected",
    [
        ("noun.act", "noun.act", 1.0),
        ("  noun.act \n", "noun.act", 1.0),  # surrounding whitespace is stripped
        ("Noun.act", "noun.act", 0.0),  # nothing else is folded
        ("noun.act.", "noun.act", 0.0),
        ("", "noun.act", 0.0),
        ("", "", 1.0),
        ("café", "café", 1.0),
        (LONG, LONG, 1.0),
        ("noun.act", "noun.act\n", 1.0),  # the reference is stripped too: a trailing newline can match
        ("noun.act", " noun.act ", 1.0),
    ],
)
def test_exact_match(completion, reference, expected):
    assert score("exact_match", completion, reference) == expected


@pytest.mark.parametrize(
    "completion, reference, expected",
    [
        ("Paris.", "paris", 1.0),  # case and surrounding punctuation folded
        ('  "PARIS"  ', "Paris", 1.0),
        ("New   York", "new york", 1.0),  # inner whitespace collapsed
        ("New-York", "new york", 0.0),  # inner punctuation kept
        ("", "paris", 0.0),
        ("Straße", "STRASSE", 1.0),  # Unicode case folding: ß folds to ss
        ("-5", "5", 0.0),  # a sign is part of the answer
        ("50%", "50", 0.0),  # so is a unit
        ("$5", "5", 0.0),
        ("0.5", ".5", 0.0),  # a leading point is a digit's, not punctuation
        ("(A)", "a", 1.0),  # enclosing brackets only wrap it
        ('"Paris".', "paris", 1.0),
        ("f(x)", "f(x", 0.0),  # a bracket that does not enclose the answer stays
        ("5.", "5", 1.0),  # a trailing full stop ends a sentence
    ],
)
def test_normalized_match(completion, reference, expected):
    assert score("normalized_match", completion, reference) == expected
    assert normalize("  The END!! ") == "the end"


def test_token_f1_is_squads_bag_of_tokens_f1():
    assert squad_tokens("The Cat, sat!") == ["cat", "sat"]  # lower case, no punctuation, no articles
    # prediction "cat sat on mat" vs reference "the cat sat": common 2, precision 2/4, recall 2/2 -> F1 2/3
    assert score("token_f1", "cat sat on mat", "the cat sat") == pytest.approx(2 / 3)
    assert score("token_f1", "dog", "the cat sat") == 0.0
    assert score("token_f1", "", "the cat") == 0.0
    assert score("token_f1", "", "the") == 1.0  # both empty once articles go: they agree
    assert score("token_f1", "x b b", "b b c") == pytest.approx(2 / 3)  # counts, not sets: common 2 of 3 each
    assert score("token_f1", "a b b", "b b c") == pytest.approx(0.8)  # "a" is an article: P 2/2, R 2/3
    assert score("token_f1", "naïve café", "café naïve") == 1.0
    assert score("token_f1", LONG, "word") == pytest.approx(2 * (1 / 5000) * 1 / (1 / 5000 + 1))


def test_rouge_l_is_the_lcs_f_measure():
    # reference "the cat sat on the mat" (6 tokens), answer "the cat lay on the mat" (6): LCS 5 -> P = R = F = 5/6
    assert score("rouge_l", "the cat lay on the mat", "the cat sat on the mat") == pytest.approx(5 / 6)
    assert score("rouge_l", "", "the cat") == 0.0
    assert score("rouge_l", "Cats are running", "cat is run") == pytest.approx(2 / 3)  # stemming: cat, run
    # 5000 tokens against 2: LCS 2, precision 2/5000, recall 1
    assert score("rouge_l", LONG, "word word") == pytest.approx(2 * (2 / 5000) / (2 / 5000 + 1))


def test_chrf_and_bleu_against_hand_worked_values():
    # BLEU of "the cat sat on the mat" against "the cat sat on a mat": clipped n-gram precisions 5/6, 3/5,
    # 2/4 and 1/3, same length (no brevity penalty): their geometric mean
    expected_bleu = (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25
    assert score("bleu", "the cat sat on the mat", "the cat sat on a mat") == pytest.approx(expected_bleu, rel=1e-6)
    assert score("bleu", "a b", "a b") == pytest.approx(1.0)  # effective order: two words can still match fully
    # chrF of "ab" against "abc": character 1-grams P 2/2 R 2/3, 2-grams P 1/1 R 1/2 (orders 3-6 have no
    # n-grams in the answer and are left out); F-beta (beta 2) of the average P 1 and R 7/12
    precision, recall = 1.0, (2 / 3 + 1 / 2) / 2
    assert score("chrf", "ab", "abc") == pytest.approx(5 * precision * recall / (4 * precision + recall), rel=1e-6)
    reference = "the cat sat on the mat"
    assert score("chrf", reference, reference) == pytest.approx(1.0)
    assert score("chrf", "", reference) == 0.0 and score("bleu", "", reference) == 0.0


def test_json_match_is_the_share_of_reference_fields_answered_equal():
    reference = json.dumps({"name": "Ada", "year": 1815, "tags": ["math"]})
    assert score("json_match", '{"name": "Ada", "year": 1815, "tags": ["math"]}', reference) == 1.0
    assert score("json_match", ' {"year": 1815, "name": "Bob", "extra": 1} ', reference) == pytest.approx(1 / 3)
    assert score("json_match", '{"year": "1815"}', reference) == 0.0  # a string is not the number
    assert score("json_match", '{"name": "Ada",', reference) == 0.0  # does not parse
    assert score("json_match", "[1, 2]", reference) == 0.0  # not an object
    assert score("json_match", "", reference) == 0.0
    assert score("json_match", '{"name": "Zoë"}', '{"name": "Zoë"}') == 1.0
    # JSON's equality, not Python's: true is not 1, [1, 0] is not [true, false]; 1 and 1.0 are one number
    assert score("json_match", '{"ok": 1}', '{"ok": true}') == 0.0
    assert score("json_match", '{"ok": true}', '{"ok": 1}') == 0.0
    assert score("json_match", '{"bits": [1, 0]}', '{"bits": [true, false]}') == 0.0
    assert score("json_match", '{"n": {"x": 0}}', '{"n": {"x": false}}') == 0.0
    assert score("json_match", '{"year": 1815.0}', '{"year": 1815}') == 1.0
    assert score("json_match", '{"v": null}', '{"v": null}') == 1.0


def test_regex_full_matches_the_row_pattern_or_the_tasks():
    assert score("regex", " 2024-01-31 ", "", pattern=r"\d{4}-\d{2}-\d{2}") == 1.0
    assert score("regex", "on 2024-01-31", "", pattern=r"\d{4}-\d{2}-\d{2}") == 0.0  # a full match only
    assert score("regex", "", "", pattern=r"\d*") == 1.0
    scorer = make_scorer(Scoring(scorer="regex", pattern=r"[A-Z]+"))
    rows = [{"prompt": "p", "completion": "r"}, {"prompt": "p", "completion": "r", "pattern": r"\d+"}]
    assert scorer.score_all(["p", "p"], ["ABC", "ABC"], ["r", "r"], rows) == [1.0, 0.0]  # the row's pattern wins


def test_a_users_scorer_is_imported_and_checked(tmp_path):
    (tmp_path / "my_scores.py").write_text(
        "def length_ratio(prompt, completion, reference, **row):\n"
        "    return min(1.0, len(completion) / max(1, len(reference)))\n"
        "def broken(prompt, completion, reference, **row):\n"
        "    return 'high'\n"
    )
    scorer = make_scorer(Scoring(scorer="my_scores:length_ratio", import_root=str(tmp_path)))
    assert scorer.key == "length_ratio"  # its own metric: domain_length_ratio
    assert not deterministic(Scoring(scorer="my_scores:length_ratio", import_root=str(tmp_path)))
    assert scorer.score_all(["p"], ["ab"], ["abcd"], [{}]) == [0.5]
    broken = make_scorer(Scoring(scorer="my_scores:broken", import_root=str(tmp_path)))
    with pytest.raises(ScoringError, match="the scorer returned 'high'; every score must be a finite number"):
        broken.score_all(["p"], ["a"], ["b"], [{}])


def test_a_users_batch_scorer_scores_the_whole_batch_in_one_call(tmp_path):
    (tmp_path / "judge.py").write_text(
        "class Judge:\n"
        "    deterministic = True\n"
        "    def __init__(self):\n"
        "        self.batches = []\n"
        "    def score_batch(self, prompts, completions, references, rows):\n"
        "        self.batches.append(len(completions))\n"
        "        return [float(c == r) + row.get('bonus', 0) for c, r, row in zip(completions, references, rows)]\n"
        "judge = Judge()\n"
    )
    spec = Scoring(scorer="judge:judge", import_root=str(tmp_path))
    scorer = make_scorer(spec)
    rows = [{"prompt": "p", "completion": "a", "bonus": 0.5}, {"prompt": "p", "completion": "b"}]
    assert scorer.score_all(["p", "p"], ["a", "x"], ["a", "b"], rows) == [1.5, 0.0]
    assert scorer.key == "judge" and scorer.kind.batches == [2] and deterministic(spec)


def test_a_users_scorer_gets_the_baseline_cache_when_it_declares_itself_deterministic(tmp_path):
    from hpo.run.baseline import cacheable
    from trainers.recipe import DataPaths, Recipe

    (tmp_path / "plain.py").write_text("def overlap(prompt, completion, reference, **row):\n    return 1.0\n")
    (tmp_path / "steady.py").write_text(
        "def overlap(prompt, completion, reference, **row):\n    return 1.0\noverlap.deterministic = True\n"
    )

    def recipe(scorer: str) -> Recipe:
        metric = Scoring(scorer=scorer, import_root=str(tmp_path))
        return Recipe("sft", "lora", "model", DataPaths("train", "eval", None, "probe"), (), metric=metric)

    assert cacheable(recipe("exact_match")) and cacheable(recipe("steady:overlap"))
    assert not cacheable(recipe("plain:overlap"))
    before = source_digest(Scoring(scorer="steady:overlap", import_root=str(tmp_path)))
    assert before and source_digest(Scoring(scorer="exact_match")) == ""
    (tmp_path / "steady.py").write_text((tmp_path / "steady.py").read_text() + "# edited\n")
    assert source_digest(Scoring(scorer="steady:overlap", import_root=str(tmp_path))) != before


def test_every_builtin_is_one_registered_object_defined_in_the_docs():
    judging = (Path(__file__).parents[1] / "docs" / "judging.md").read_text()
    for name, builtin in BUILTIN_SCORERS.items():
        assert builtin.name == name and builtin.definition and builtin.deterministic
        assert f"| `{name}` |" in judging, f"docs/judging.md has no row for the built-in scorer {name}"
        assert builtin.score_batch(["p", "p"], ["a", "b"], ["a", "a"], [{"pattern": "a"}] * 2) == [
            builtin.function("p", "a", "a", pattern="a"),
            builtin.function("p", "b", "a", pattern="a"),
        ]


def test_chance_is_the_majority_label_and_the_uniform_guess():
    rows = [{"prompt": "p", "completion": label} for label in ("a", "a", "a", "b")]
    chance = chance_scores(make_scorer(Scoring(scorer="exact_match")), rows, ("a", "b", "c"))
    assert chance == {
        "majority_label": "a",
        "majority": 0.75,
        "majority_scores": [1.0, 1.0, 1.0, 0.0],  # row by row, for the paired test against the best
        "uniform": pytest.approx((0.75 + 0.25 + 0) / 3),
    }


def test_reference_problems_name_the_rows_a_scorer_cannot_score():
    rows = [{"completion": '{"a": 1}'}, {"completion": "not json"}, {"completion": "{}"}]
    found = reference_problems(Scoring(scorer="json_match"), rows)
    assert [n for n, _ in found] == [2, 3]
    assert "not a JSON object" in found[0][1] and "empty JSON object" in found[1][1]
    assert reference_problems(Scoring(scorer="regex", pattern="[a-"), [{"completion": "x"}])[0][1].startswith(
        "pattern '[a-' is not a valid regular expression"
    )
    assert reference_problems(Scoring(scorer="token_f1"), rows) == []
    assert reference_problems(Scoring(scorer="pkg:fn"), rows) == []  # a user's scorer is trusted
