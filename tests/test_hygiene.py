from common.data.hygiene import HygieneReport, exact_duplicates, near_duplicates, split_indices

BASE = (
    "The patient should take the medicine twice a day with food and drink plenty of water "
    "while resting at home for at least three days before returning to work."
)


def test_exact_duplicates_ignore_case_and_whitespace():
    texts = ["Hello  world", "hello world", "HELLO WORLD\n", "other"]
    assert exact_duplicates(texts) == [0, 3]


def test_near_duplicates_drop_small_edits_and_keep_distinct_texts():
    edited = BASE.replace("three", "four")
    other = "Interest rates rise when inflation is high, and bond prices then fall for existing holders."
    assert near_duplicates([BASE, edited, other], threshold=0.7) == [0, 2]


def test_near_duplicates_work_on_chinese_without_spaces():
    a = "病人应该每天服药两次，饭后服用，并且多喝水，在家休息至少三天再回去上班。"
    b = "病人应该每天服药两次，饭后服用，并且多喝水，在家休息至少四天再回去上班。"
    c = "合同需要要约和承诺，双方都要有行为能力，内容也必须合法。"
    assert near_duplicates([a, b, c], threshold=0.6) == [0, 2]


def test_split_is_seeded_disjoint_and_sized():
    train, val = split_indices(100, 0.1, seed=3)
    assert len(val) == 10 and len(train) == 90 and not set(train) & set(val)
    assert split_indices(100, 0.1, seed=3) == (train, val)
    assert split_indices(100, 0.1, seed=4) != (train, val)
    assert split_indices(5, 0.0, seed=0) == ([0, 1, 2, 3, 4], [])
    assert len(split_indices(3, 0.01, seed=0)[1]) == 1  # at least one validation row


def test_report_counts():
    r = HygieneReport()
    r.add("exact duplicates", 10, 7)
    assert r.steps == [{"step": "exact duplicates", "in": 10, "kept": 7, "dropped": 3}]
    assert "exact duplicates" in r.table()
