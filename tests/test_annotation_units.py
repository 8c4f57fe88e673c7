"""Pure parts of the annotation app: translations, safe rendering, rank conversions."""

from __future__ import annotations

import pytest

from annotation_ui.i18n import EN, ZH, pick_language, t
from annotation_ui.render import prompt_markdown, safe_markdown
from annotation_ui.service import dense_ranks, to_display, to_original
from annotation_ui.store import StoreError


def test_every_label_exists_in_both_languages_and_is_translated():
    assert set(EN) == set(ZH)
    same = [k for k in EN if EN[k] == ZH[k]]
    assert not same, f"untranslated: {same}"
    for key in EN:  # the same {fields} on both sides, so formatting never fails in one language
        import string

        fields = lambda s: {f for _, f, _, _ in string.Formatter().parse(s) if f}  # noqa: E731
        assert fields(EN[key]) == fields(ZH[key]), key
    assert t("progress", "zh-CN", done=3, left=4) == "已完成：**3** · 剩余：**4**"


def test_api_figures_turn_nan_into_null_without_touching_names():
    import math

    from annotation_ui.app import _json_safe

    report = {"fleiss_kappa": math.nan, "agreement_with_majority": {"NaNa": 0.5, "li": math.nan}, "tasks": [1.0, math.nan]}
    assert _json_safe(report) == {"fleiss_kappa": None, "agreement_with_majority": {"NaNa": 0.5, "li": None},
                                  "tasks": [1.0, None]}


def test_browser_language_pick():
    assert pick_language("zh-CN,zh;q=0.9,en;q=0.8") == "zh-CN"
    assert pick_language("en-GB,en;q=0.9") == "en"
    assert pick_language("fr-FR,zh-TW;q=0.5") == "zh-CN"
    assert pick_language("fr-FR", default="en") == "en" and pick_language(None, "zh-CN") == "zh-CN"


def test_untrusted_text_loses_its_html_and_script_schemes():
    out = safe_markdown('<img src=x onerror="alert(1)"> & <script>x()</script>')
    assert "<" not in out and ">" not in out
    assert out == '&lt;img src=x onerror="alert(1)"&gt; &amp; &lt;script&gt;x()&lt;/script&gt;'
    link = safe_markdown("[a](javascript:alert(1)) [b](JavaScript :x) [c](data:text/html,hi) [d](https://ok.example)")
    assert "javascript:" not in link.lower() and "data:" not in link and "(https://ok.example)" in link
    assert safe_markdown("```python\nif a < b:\n    pass\n```") == "```python\nif a &lt; b:\n    pass\n```"
    md = prompt_markdown([{"role": "user", "content": "<b>hi</b>"}, {"role": "assistant", "content": "yo"},
                          {"role": "user", "content": "again"}], "zh-CN")
    assert md.startswith("**用户:**") and "&lt;b&gt;hi&lt;/b&gt;" in md and "**助手:**" in md


def test_ranks_as_picked_become_dense_and_travel_between_display_and_original_order():
    assert dense_ranks([1, 1, 3], 3) == [1, 1, 2]
    assert dense_ranks(["2", 3, 3], 3) == [1, 2, 2]
    for bad, message in [([1, 2], "each of the 2|each of the 3"), ([0, 1, 2], "1–3"), ([1, None, 2], "each"),
                         ([1, True, 2], "1–3"), ([1, "x", 1], "integers")]:
        with pytest.raises(StoreError, match=message):
            dense_ranks(bad, 3)
    order = [2, 0, 1]  # display position p shows original response order[p]
    display = ["best", "mid", "worst"]
    original = to_original(display, order)
    assert original == ["mid", "worst", "best"] and to_display(original, order) == display


def test_ranks_scores_and_task_ids_that_are_not_integers_are_refused_and_nothing_is_stored(tmp_path):
    from annotation_ui.config import AnnotationConfig
    from annotation_ui.service import Service
    from annotation_ui.store import Store

    store = Store(str(tmp_path / "db.sqlite"))
    store.add_user("ann", "password123")
    store.add_tasks([{"prompt": [{"role": "user", "content": "q"}], "responses": ["a", "b", "c"]}])
    service = Service(store, AnnotationConfig(db=str(tmp_path / "db.sqlite")))
    t = service.next_task("ann")
    for ranks, scores, task_id in [([1.5, 2, 3], None, t["task_id"]), ([1.0, 2, 3], None, t["task_id"]),
                                   ([1, 2, 3], [5, 4.5, 1], t["task_id"]), ([1, 2, 3], [5, True, 1], t["task_id"]),
                                   ([1, 2, 3], None, float(t["task_id"]) + 0.5), (["1", "2", "3.0"], None, t["task_id"])]:
        with pytest.raises(StoreError, match="integer"):
            service.submit("ann", task_id, ranks, t["request_id"], scores)
    assert store.labels() == []
    assert service.submit("ann", str(t["task_id"]), ["1", 2, 3], t["request_id"], ["5", 4, 1])["version"] == 1
    with pytest.raises(StoreError, match="scores must be"):  # the store's own check, for any other caller
        store.submit(store.user("ann").id, t["task_id"], [1, 2, 3], "another-request-id", scores=[1.5, 2, 3])


def test_client_text_is_bounded_and_refused_past_the_limit(tmp_path):
    import asyncio

    from annotation_ui.config import AnnotationConfig
    from annotation_ui.service import LIMITS, Service
    from annotation_ui.store import Store

    store = Store(str(tmp_path / "db.sqlite"))
    store.add_user("ann", "password123")
    store.add_tasks([{"prompt": [{"role": "user", "content": "q"}], "responses": ["a", "b"]}])
    service = Service(store, AnnotationConfig(db=str(tmp_path / "db.sqlite")))
    t = service.next_task("ann")
    with pytest.raises(StoreError, match="the note is 200000 characters; the limit is 2000"):
        service.flag("ann", t["task_id"], "broken", "x" * 200_000, t["request_id"])
    with pytest.raises(StoreError, match="request_id"):
        service.flag("ann", t["task_id"], "broken", "ok", "r" * 65)
    assert store.labels() == []
    assert service.flag("ann", t["task_id"], "broken", "y" * LIMITS["note"], t["request_id"])["flag"] == "broken"
    # logins with an over-long name or password are refused before bcrypt sees them
    assert asyncio.run(service.login("ann", "password123")) is True
    assert asyncio.run(service.login("ann" * 30, "password123")) is False
    assert asyncio.run(service.login("ann", "p" * 100_000)) is False
    with pytest.raises(StoreError, match="72 bytes"):
        store.add_user("long", "p" * 73)
    store.add_user("boss", "password123", "admin")
    with pytest.raises(StoreError, match="combine"):
        service.export("boss", "x" * 5000)
