from hpo.evaluate import UNPARSED, confusion, format_confusion


def test_confusion_matrix_counts_unparsed_answers_separately():
    matrix = confusion(["a", "a", "b"], ["a", "maybe a", "a"], ["a", "b"])
    assert matrix == {"a": {"a": 1, "b": 0, UNPARSED: 1}, "b": {"a": 1, "b": 0, UNPARSED: 0}}
    assert format_confusion(matrix).splitlines()[0].split()[-1] == UNPARSED


def test_choice_accuracy_picks_the_letter_the_model_rates_likeliest(tiny):
    """The letter-logit shortcut agrees with scoring every `prompt + letter` sequence in full."""
    import torch

    from hpo.config import load_sweep
    from trainers.models import load_base
    from trainers.probes import _sum_nll, chat_prompt, choice_accuracy, choice_question

    recipe = load_sweep(tiny / "sweep.yaml").recipe
    model, tokenizer = load_base(recipe.model)
    model.eval()
    questions = [("Which is a fruit?", ["stone", "apple", "car"]), ("Which flies?", ["bird", "rock"])]
    rows = [{"question": q, "choices": c, "answer": a} for q, c in questions for a in range(len(c))]

    def likeliest(row) -> int:
        prompt = tokenizer(chat_prompt(tokenizer, choice_question(row)), add_special_tokens=False)["input_ids"]
        scores = []
        for letter in "ABC"[: len(row["choices"])]:
            ids = torch.tensor([prompt + tokenizer(letter, add_special_tokens=False)["input_ids"][:1]])
            scores.append(-_sum_nll(model, ids, len(prompt))[0])
        return max(range(len(scores)), key=scores.__getitem__)

    expected = sum(likeliest(row) == row["answer"] for row in rows) / len(rows)
    assert choice_accuracy(model, tokenizer, rows) == expected
    assert expected == 2 / len(rows)  # each question's rows cover every answer: exactly one is the model's pick
    assert choice_question(rows[0]).splitlines()[1:] == [
        "A. stone",
        "B. apple",
        "C. car",
        "Answer with the letter only.",
    ]
