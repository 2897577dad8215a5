from hpo.evaluate import UNPARSED, confusion, format_confusion


def test_confusion_matrix_counts_unparsed_answers_separately():
    matrix = confusion(["a", "a", "b"], ["a", "maybe a", "a"], ["a", "b"])
    assert matrix == {"a": {"a": 1, "b": 0, UNPARSED: 1}, "b": {"a": 1, "b": 0, UNPARSED: 0}}
    assert format_confusion(matrix).splitlines()[0].split()[-1] == UNPARSED
