"""The admin tab (admins only; hidden from annotators and refused by the service anyway):
progress per annotator, agreement figures, users, export with downloads, task import and
candidate generation from a model."""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from annotation_ui.export import EVAL_BATCH_PREFIX
from annotation_ui.i18n import t
from annotation_ui.quality import below_floor
from annotation_ui.render import safe_markdown
from annotation_ui.service import Service
from annotation_ui.store import StoreError
from annotation_ui.tasks import MAX_RESPONSES
from common.pipeline import default_model


def figure(x) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}" if isinstance(x, float) else str(x)


def upload_path(upload) -> str:
    return upload if isinstance(upload, str) else upload.name


@dataclass
class AdminTab:
    tab: gr.Tab
    outputs: list  # what `texts` updates
    texts: Callable[[str], dict]


@dataclass
class AdminComponents:
    """Every component of the admin tab, as `layout` placed them."""

    tab: gr.Tab
    refresh: gr.components.Component
    overview_title: gr.components.Component
    totals_md: gr.components.Component
    overview_table: gr.components.Component
    rounds_title: gr.components.Component
    round_md: gr.components.Component
    rounds_table: gr.components.Component
    quality_title: gr.components.Component
    floor_md: gr.components.Component
    quality_table: gr.components.Component
    users_title: gr.components.Component
    users_table: gr.components.Component
    export_title: gr.components.Component
    combine: gr.components.Component
    export_btn: gr.components.Component
    export_md: gr.components.Component
    export_files: gr.components.Component
    import_title: gr.components.Component
    import_file: gr.components.Component
    import_btn: gr.components.Component
    import_md: gr.components.Component
    generate_title: gr.components.Component
    gen_prompts: gr.components.Component
    gen_model: gr.components.Component
    gen_k: gr.components.Component
    gen_tokens: gr.components.Component
    gen_btn: gr.components.Component
    gen_md: gr.components.Component


def layout() -> AdminComponents:
    """Place the tab's components (inside the caller's `gr.Tabs`); no events."""
    with gr.Tab(id="admin", visible=False, elem_id="rk-tab-admin") as tab:
        refresh = gr.Button(size="sm", elem_id="rk-admin-refresh")
        overview_title = gr.Markdown()
        totals_md = gr.Markdown(elem_id="rk-totals")
        overview_table = gr.Dataframe(interactive=False, elem_id="rk-overview")
        rounds_title = gr.Markdown()
        round_md = gr.Markdown(elem_id="rk-current-round")
        rounds_table = gr.Dataframe(interactive=False, elem_id="rk-rounds")
        quality_title = gr.Markdown()
        floor_md = gr.Markdown(elem_id="rk-floor")
        quality_table = gr.Dataframe(interactive=False, elem_id="rk-quality")
        users_title = gr.Markdown()
        users_table = gr.Dataframe(interactive=False, elem_id="rk-users")
        export_title = gr.Markdown()
        with gr.Row():
            combine = gr.Radio([], value="all", elem_id="rk-combine")
            export_btn = gr.Button(variant="primary", elem_id="rk-export")
        export_md = gr.Markdown(elem_id="rk-export-result")
        export_files = gr.File(file_count="multiple", interactive=False, elem_id="rk-export-files")
        import_title = gr.Markdown()
        import_file = gr.File(file_types=[".jsonl", ".gz", ".json"], elem_id="rk-import-file")
        import_btn = gr.Button(elem_id="rk-import")
        import_md = gr.Markdown(elem_id="rk-import-result")
        generate_title = gr.Markdown()
        with gr.Row():
            gen_prompts = gr.File(file_types=[".jsonl", ".gz"], elem_id="rk-gen-prompts")
            with gr.Column():
                gen_model = gr.Textbox(value=default_model("sft"), elem_id="rk-gen-model")
                gen_k = gr.Slider(2, MAX_RESPONSES, value=4, step=1, elem_id="rk-gen-k")
                gen_tokens = gr.Slider(16, 512, value=128, step=16, elem_id="rk-gen-tokens")
        gen_btn = gr.Button(elem_id="rk-generate")
        gen_md = gr.Markdown(elem_id="rk-generate-result")

    return AdminComponents(tab, refresh, overview_title, totals_md, overview_table, rounds_title, round_md, rounds_table,
                           quality_title, floor_md, quality_table, users_title, users_table, export_title, combine,
                           export_btn, export_md, export_files, import_title, import_file, import_btn, import_md,
                           generate_title, gen_prompts, gen_model, gen_k, gen_tokens, gen_btn, gen_md)


def texts(c: AdminComponents, lg: str) -> dict:
    """The tab's fixed labels in language `lg`."""
    return {
        c.tab: gr.update(label=t("tab_admin", lg)), c.refresh: gr.update(value=t("refresh", lg)),
        c.overview_title: f"### {t('admin_overview', lg)}", c.quality_title: f"### {t('admin_quality', lg)}",
        c.rounds_title: f"### {t('admin_rounds', lg)}",
        c.users_title: f"### {t('admin_users', lg)}", c.export_title: f"### {t('admin_export', lg)}",
        c.combine: gr.update(label=t("combine", lg),
                             choices=[(t("combine_all", lg), "all"), (t("combine_majority", lg), "majority")]),
        c.export_btn: gr.update(value=t("export", lg)), c.import_title: f"### {t('admin_import', lg)}",
        c.import_file: gr.update(label=t("import_file", lg)), c.import_btn: gr.update(value=t("import", lg)),
        c.generate_title: f"### {t('admin_generate', lg)}", c.gen_prompts: gr.update(label=t("gen_prompts", lg)),
        c.gen_model: gr.update(label=t("gen_model", lg)), c.gen_k: gr.update(label=t("gen_k", lg)),
        c.gen_tokens: gr.update(label=t("gen_tokens", lg)), c.gen_btn: gr.update(value=t("generate", lg)),
    }


def admin_view(c: AdminComponents, lg: str, ov: dict, q: dict, users: list[dict], floor: float | None) -> dict:
    """The tables and figures of the tab, from the store's overview, quality figures and users."""
    statuses = ["done", "skipped", "flagged", "open", "expired"]
    per = [[name, *[counts.get(s, 0) for s in statuses]] for name, counts in sorted(ov["per_annotator"].items())]
    majority, gold = q["agreement_with_majority"], q["gold_accuracy"]
    figures = [[t("q_tasks", lg), q["tasks"]], [t("q_alpha", lg), figure(q["krippendorff_alpha"])],
               [t("q_fleiss", lg), figure(q["fleiss_kappa"])], [t("q_cohen", lg), figure(q["cohen_kappa_mean"])]]
    figures += [[f"{t('q_majority', lg)}: {a}", figure(x)] for a, x in majority.items()]
    figures += [[f"{t('q_gold', lg)}: {a}", figure(x)] for a, x in gold.items()]
    low = below_floor(q, floor) if floor is not None else {"round": {}, "annotators": {}}
    names = {"krippendorff_alpha": t("q_alpha", lg), "fleiss_kappa": t("q_fleiss", lg),
             "cohen_kappa_mean": t("q_cohen", lg)}
    warnings = [f"{names[k]} {x:.2f}" for k, x in low["round"].items()]
    warnings += [f"**{safe_markdown(a)}**: {'; '.join(r)}" for a, r in low["annotators"].items()]
    floor_text = "" if not warnings else "⚠️ " + t("below_floor", lg, floor=floor) + " " + " · ".join(warnings)
    rounds = [b for b in ov["batches"] if not b["batch"].startswith(EVAL_BATCH_PREFIX)]
    current = rounds[-1] if rounds else None  # the newest round: the one being labelled
    return {c.totals_md: t("totals", lg, **{k: v for k, v in ov.items() if k not in ("per_annotator", "batches")}),
            c.round_md: t("current_round", lg, **current) if current else t("no_rounds", lg),
            c.floor_md: floor_text,
            c.rounds_table: gr.update(value=[[b["batch"], b["tasks"], b["labelled"],
                                              f"{b['priority_max']:.3f} → {b['priority_min']:.3f}"]
                                             for b in reversed(ov["batches"])] or None,
                                      headers=[t("col_batch", lg), t("col_tasks", lg), t("col_labelled", lg),
                                               t("col_priority", lg)]),
            c.overview_table: gr.update(value=per or None,
                                        headers=[t("col_annotator", lg)] + [t(f"col_{s}", lg) for s in statuses]),
            c.quality_table: gr.update(value=figures, headers=[t("col_figure", lg), t("col_value", lg)]),
            c.users_table: gr.update(value=[[u["name"], t(f"role_{u['role']}", lg), "✓" if u["active"] else "—"]
                                            for u in users],
                                     headers=[t("col_name", lg), t("col_role", lg), t("col_active", lg)])}


def build_admin_tab(service: Service, lang: gr.State) -> AdminTab:
    c = layout()

    def on_admin(lg: str, request: gr.Request):
        try:
            ov = service.overview(request.username)
            q = service.quality(request.username)
            users = service.users(request.username)
        except StoreError as err:
            return {c.totals_md: "❌ " + safe_markdown(str(err))}
        return admin_view(c, lg, ov, q, users, service.cfg.agreement_floor)

    def on_export(lg: str, how: str, request: gr.Request):
        try:
            out, counts = service.export(request.username, how or "all")
        except StoreError as err:
            return {c.export_md: "❌ " + safe_markdown(str(err)), c.export_files: None}
        # downloads are served from copies in a fresh temporary folder (Gradio moves them into
        # its cache from there), so export_dir itself never has to be opened to Gradio's file route
        tmp = Path(tempfile.mkdtemp(prefix="rlhfkit-export-"))
        files = [shutil.copy(out / name, tmp / name) for name in ("pairs.jsonl", "rankings.jsonl")]
        return {c.export_md: t("exported", lg, path=str(out), **counts), c.export_files: [str(f) for f in files]}

    def on_uploaded(lg: str, upload):
        """The upload finished (the file is on the server): say so — the signal to go on."""
        return "" if upload is None else t("file_ready", lg, name=safe_markdown(Path(upload_path(upload)).name))

    def on_import(lg: str, upload, request: gr.Request):
        if upload is None:
            return {c.import_md: ""}
        try:
            n = service.import_tasks(request.username, upload_path(upload))
        except Exception as err:  # Forbidden, DataError (file:line), an unreadable file: one line
            return {c.import_md: "❌ " + safe_markdown(str(err))}
        return {c.import_md: t("imported", lg, count=n)}

    def on_generate(lg: str, upload, model: str, k, tokens, request: gr.Request,
                    progress=gr.Progress(track_tqdm=True)):  # noqa: B008 - Gradio's idiom: the generation's tqdm bar, in the page
        if upload is None:
            return {c.gen_md: ""}
        try:
            n = service.generate_tasks(request.username, upload_path(upload), model.strip(), k, tokens)
        except Exception as err:  # Forbidden, DataError (file:line), a model that can't load: one line
            return {c.gen_md: "❌ " + safe_markdown(str(err))}
        return {c.gen_md: t("generated", lg, count=n)}

    private = {"api_visibility": "private"}
    admin_outputs = [c.totals_md, c.overview_table, c.round_md, c.rounds_table, c.floor_md, c.quality_table, c.users_table]
    c.refresh.click(on_admin, [lang], admin_outputs, **private)
    c.tab.select(on_admin, [lang], admin_outputs, **private)
    c.export_btn.click(on_export, [lang, c.combine], [c.export_md, c.export_files], **private)
    c.import_file.upload(on_uploaded, [lang, c.import_file], [c.import_md], **private)
    c.import_btn.click(on_import, [lang, c.import_file], [c.import_md], **private)
    c.gen_prompts.upload(on_uploaded, [lang, c.gen_prompts], [c.gen_md], **private)
    c.gen_btn.click(on_generate, [lang, c.gen_prompts, c.gen_model, c.gen_k, c.gen_tokens], [c.gen_md], **private)
    outputs = [c.tab, c.refresh, c.overview_title, c.rounds_title, c.quality_title, c.users_title, c.export_title,
               c.combine, c.export_btn, c.import_title, c.import_file, c.import_btn, c.generate_title, c.gen_prompts,
               c.gen_model, c.gen_k, c.gen_tokens, c.gen_btn]
    return AdminTab(c.tab, outputs, lambda lg: texts(c, lg))
