"""The labelling tab: the current task's prompt and K responses in this annotator's order, rank
(and score) inputs, submit / skip / flag, and the domain's guidelines beside them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from annotation_ui.config import AnnotationConfig
from annotation_ui.i18n import t
from annotation_ui.render import prompt_markdown, safe_markdown
from annotation_ui.service import Service
from annotation_ui.store import FLAGS, StoreError
from annotation_ui.tasks import MAX_RESPONSES

LETTERS = "ABCDEFGH"[:MAX_RESPONSES]


def guidelines(cfg: AnnotationConfig, domain: str, lang: str) -> str:
    folder = Path(cfg.guidelines_dir)
    for name in (f"{domain}.{lang}.md", f"{domain}.en.md", f"general.{lang}.md", "general.en.md"):
        if (folder / name).is_file():
            return (folder / name).read_text(encoding="utf-8")
    return ""


@dataclass
class LabelTab:
    """What the rest of the page needs from the labelling tab."""

    tab: gr.Tab
    outputs: list  # every component `show` and `texts` update (the task view state included)
    texts: Callable[[str], dict]  # language → its fixed labels
    show: Callable[..., dict]  # (lg, view, user, status="", keep_inputs=False) → the task on screen


@dataclass
class LabelComponents:
    """Every component of the labelling tab, as `layout` placed them."""

    tab: gr.Tab
    progress_md: gr.Markdown
    status_md: gr.Markdown
    meta_md: gr.Markdown
    prompt_md: gr.Markdown
    slot_boxes: list  # per response slot: its group, title, body, rank and score inputs
    slot_titles: list
    slot_bodies: list
    ranks: list
    scores: list
    submit_btn: gr.Button
    skip_btn: gr.Button
    flag_box: gr.Accordion
    flag_reason: gr.Radio
    note: gr.Textbox
    flag_btn: gr.Button
    shortcuts_md: gr.Markdown
    guide_title: gr.Markdown
    guide_md: gr.Markdown

    def outputs(self) -> list:
        return [self.progress_md, self.status_md, self.meta_md, self.prompt_md, *self.slot_boxes, *self.slot_titles,
                *self.slot_bodies, *self.ranks, *self.scores, self.submit_btn, self.skip_btn, self.flag_box,
                self.flag_reason, self.note, self.flag_btn, self.shortcuts_md, self.guide_title, self.guide_md, self.tab]


def layout(cfg: AnnotationConfig) -> LabelComponents:
    """Place the tab's components (inside the caller's `gr.Tabs`); no events."""
    with gr.Tab(id="label", elem_id="rk-tab-label") as tab:
        progress_md = gr.Markdown(elem_id="rk-progress")
        status_md = gr.Markdown(elem_id="rk-status")
        with gr.Row():
            with gr.Column(scale=3):
                meta_md = gr.Markdown(elem_id="rk-meta")
                prompt_md = gr.Markdown(elem_id="rk-prompt", line_breaks=True, container=True, padding=True)
                slot_boxes, slot_titles, slot_bodies, ranks, scores = [], [], [], [], []
                for i in range(MAX_RESPONSES):
                    with gr.Group(visible=False, elem_id=f"rk-slot-{i}", elem_classes=["rk-slot"]) as box:
                        slot_titles.append(gr.Markdown(elem_id=f"rk-title-{i}", padding=True))
                        slot_bodies.append(gr.Markdown(elem_id=f"rk-response-{i}", line_breaks=True,
                                                       padding=True, elem_classes=["rk-response"]))
                        with gr.Row():
                            ranks.append(gr.Radio([], elem_id=f"rk-rank-{i}", elem_classes=["rk-rank"]))
                            scores.append(gr.Radio([1, 2, 3, 4, 5], elem_id=f"rk-score-{i}",
                                                   elem_classes=["rk-score"], visible=cfg.scores))
                    slot_boxes.append(box)
                with gr.Row():
                    submit_btn = gr.Button(variant="primary", elem_id="rk-submit")
                    skip_btn = gr.Button(elem_id="rk-skip")
                with gr.Accordion(open=False, elem_id="rk-flag-box") as flag_box:
                    flag_reason = gr.Radio([], elem_id="rk-flag-reason")
                    note = gr.Textbox(lines=2, elem_id="rk-note", max_length=2000)
                    flag_btn = gr.Button(variant="stop", elem_id="rk-flag")
                shortcuts_md = gr.Markdown(elem_id="rk-shortcuts")
            with gr.Column(scale=2):
                guide_title = gr.Markdown()
                guide_md = gr.Markdown(elem_id="rk-guidelines", container=True, padding=True)

    return LabelComponents(tab, progress_md, status_md, meta_md, prompt_md, slot_boxes, slot_titles, slot_bodies, ranks,
                           scores, submit_btn, skip_btn, flag_box, flag_reason, note, flag_btn, shortcuts_md, guide_title,
                           guide_md)


def texts(c: LabelComponents, lg: str) -> dict:
    """The tab's fixed labels in language `lg`."""
    out = {
        c.tab: gr.update(label=t("tab_label", lg)),
        c.submit_btn: gr.update(value=t("submit", lg)), c.skip_btn: gr.update(value=t("skip", lg)),
        c.flag_box: gr.update(label=t("flag", lg)),
        c.flag_reason: gr.update(label=t("flag_reason", lg), choices=[(t(f"flag_{f}", lg), f) for f in FLAGS]),
        c.note: gr.update(label=t("note", lg)), c.flag_btn: gr.update(value=t("flag", lg)),
        c.shortcuts_md: t("shortcuts", lg), c.guide_title: f"### {t('guidelines', lg)}",
    }
    for i in range(MAX_RESPONSES):
        out[c.slot_titles[i]] = f"#### {t('response', lg, letter=LETTERS[i])}"
        out[c.ranks[i]] = gr.update(label=t("rank", lg))
        out[c.scores[i]] = gr.update(label=t("score", lg))
    return out


def task_view(c: LabelComponents, cfg: AnnotationConfig, lg: str, v: dict | None, keep_inputs: bool) -> dict:
    """The current task (or 'no task left'); rank/score inputs reset unless `keep_inputs`."""
    out = {}
    if v is None:
        out.update({c.meta_md: "", c.prompt_md: t("no_tasks", lg), c.guide_md: guidelines(cfg, "general", lg),
                    c.submit_btn: gr.update(interactive=False), c.skip_btn: gr.update(interactive=False),
                    c.flag_btn: gr.update(interactive=False)})
        for i in range(MAX_RESPONSES):
            out[c.slot_boxes[i]] = gr.update(visible=False)
        return out
    meta = [t("domain", lg, domain=safe_markdown(v["domain"]))]
    if v["content_notice"]:
        meta.append(t("notice", lg))
    if v["revision_of"]:
        meta.append(t("revising", lg, version=v["revision_of"]))
    out.update({c.meta_md: "\n\n".join(meta), c.prompt_md: prompt_markdown(v["prompt"], lg),
                c.guide_md: guidelines(cfg, v["domain"], lg), c.submit_btn: gr.update(interactive=True),
                c.skip_btn: gr.update(interactive=v["revision_of"] is None),
                c.flag_btn: gr.update(interactive=True)})
    k = v["k"]
    for i in range(MAX_RESPONSES):
        shown = i < k
        out[c.slot_boxes[i]] = gr.update(visible=shown)
        if keep_inputs:
            continue
        out[c.slot_bodies[i]] = safe_markdown(v["responses"][i]) if shown else ""
        out[c.ranks[i]] = gr.update(choices=list(range(1, k + 1)) if shown else [],
                                    value=(v["ranks"] or [None] * k)[i] if shown else None)
        out[c.scores[i]] = gr.update(value=(v["scores"] or [None] * k)[i] if shown else None)
    if not keep_inputs:
        out[c.note] = ""
        out[c.flag_reason] = gr.update(value=None)
    return out


def build_label_tab(service: Service, cfg: AnnotationConfig, lang: gr.State, view: gr.State) -> LabelTab:
    """Lay out the tab (inside the caller's `gr.Tabs`) and wire submit, skip and flag."""
    c = layout(cfg)

    def show(lg: str, v: dict | None, user: str, status: str = "", keep_inputs: bool = False) -> dict:
        return {lang: lg, view: v, c.status_md: status, c.progress_md: t("progress", lg, **service.progress(user)),
                **task_view(c, cfg, lg, v, keep_inputs)}

    outputs = [lang, view, *c.outputs()]

    # ---------------------------------------------------------------- handlers

    def next_task(lg: str, request: gr.Request, message: str) -> dict:
        return show(lg, service.next_task(request.username), request.username, status=f"✅ {message}")

    def failed(lg: str, v, err: Exception) -> dict:
        return {c.status_md: "❌ " + t("error", lg, message=safe_markdown(str(err))), lang: lg, view: v}

    def on_submit(lg: str, v, request: gr.Request, *values):  # Gradio inserts the request by position
        if v is None:
            return {c.status_md: t("no_tasks", lg)}
        k = v["k"]
        rank_values, score_values = list(values[:k]), list(values[MAX_RESPONSES:MAX_RESPONSES + k])
        if any(r is None for r in rank_values):
            return failed(lg, v, ValueError(t("need_ranks", lg)))
        try:
            res = service.submit(request.username, v["task_id"], rank_values, v["request_id"],
                                 score_values if cfg.scores else None)
        except StoreError as err:
            return failed(lg, v, err)
        return next_task(lg, request, t("ok_submit", lg, **res))

    def on_skip(lg: str, v, request: gr.Request):
        if v is None:
            return {c.status_md: t("no_tasks", lg)}
        try:
            service.skip(request.username, v["task_id"])
        except StoreError as err:
            return failed(lg, v, err)
        return next_task(lg, request, t("ok_skip", lg, task_id=v["task_id"]))

    def on_flag(lg: str, v, reason: str | None, text: str, request: gr.Request):
        if v is None:
            return {c.status_md: t("no_tasks", lg)}
        try:
            service.flag(request.username, v["task_id"], reason, text, v["request_id"])
        except StoreError as err:
            return failed(lg, v, err)
        return next_task(lg, request, t("ok_flag", lg, task_id=v["task_id"], flag=t(f"flag_{reason}", lg)))

    private = {"api_visibility": "private", "concurrency_limit": cfg.concurrency_limit}
    c.submit_btn.click(on_submit, [lang, view, *c.ranks, *c.scores], outputs, **private)
    c.skip_btn.click(on_skip, [lang, view], outputs, **private)
    c.flag_btn.click(on_flag, [lang, view, c.flag_reason, c.note], outputs, **private)
    return LabelTab(c.tab, outputs, lambda lg: texts(c, lg), show)
