"""The "my labels" tab: the annotator's own labels, every version, and reopening one for revision
(which shows it in the labelling tab)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr

from annotation_ui.i18n import t
from annotation_ui.page_label import LETTERS, LabelTab
from annotation_ui.render import safe_markdown
from annotation_ui.service import Service
from annotation_ui.store import StoreError


def letters(values) -> str:
    """Ranks/scores in display order → 'A:1 B:2 C:1'."""
    if not values:
        return ""
    return " ".join(f"{LETTERS[i]}:{v}" for i, v in enumerate(values))


@dataclass
class MineTab:
    tab: gr.Tab
    outputs: list  # what `texts` updates
    texts: Callable[[str], dict]


def build_mine_tab(service: Service, lang: gr.State, view: gr.State, label: LabelTab, tabs: gr.Tabs) -> MineTab:
    with gr.Tab(id="mine", elem_id="rk-tab-mine") as tab:
        intro = gr.Markdown()
        refresh = gr.Button(size="sm", elem_id="rk-mine-refresh")
        table = gr.Dataframe(interactive=False, elem_id="rk-mine-table", wrap=True)
        with gr.Row():
            pick = gr.Dropdown([], elem_id="rk-revise-pick", interactive=True)
            revise_btn = gr.Button(elem_id="rk-revise")

    def texts(lg: str) -> dict:
        return {tab: gr.update(label=t("tab_mine", lg)), intro: t("mine_intro", lg),
                refresh: gr.update(value=t("refresh", lg)), pick: gr.update(label=t("revise_task", lg)),
                revise_btn: gr.update(value=t("revise", lg))}

    def on_mine(lg: str, request: gr.Request):
        rows = service.my_labels(request.username)
        cols = ["task", "version", "ranks", "scores", "flag", "note", "at"]
        shown = [[r["task_id"], r["version"], letters(r["ranks"]), letters(r["scores"]), r["flag"] or "",
                  r["note"], r["at"]] for r in rows]
        return {table: gr.update(value=shown or None, headers=[t(f"col_{c}", lg) for c in cols]),
                pick: gr.update(choices=sorted({r["task_id"] for r in rows}), value=None)}

    def on_revise(lg: str, v, task_id, request: gr.Request):
        """The chosen label's task, its ranks filled in, in the labelling tab."""
        if task_id is None:
            return {}
        try:
            new = service.revise(request.username, task_id)
        except StoreError as err:
            status = "❌ " + t("error", lg, message=safe_markdown(str(err)))
            return label.show(lg, v, request.username, status=status, keep_inputs=True)
        return {**label.show(lg, new, request.username), tabs: gr.Tabs(selected="label")}

    private = {"api_visibility": "private"}
    refresh.click(on_mine, [lang], [table, pick], **private)
    tab.select(on_mine, [lang], [table, pick], **private)
    revise_btn.click(on_revise, [lang, view, pick], [*label.outputs, tabs], **private)
    return MineTab(tab, [tab, intro, refresh, pick, revise_btn], texts)
