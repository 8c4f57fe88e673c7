"""The labelling page (Gradio 6 Blocks) and its API, on top of `Service`.

Security model:
- Gradio's own login (`launch(auth=Service.login)`, bcrypt-checked against the store) sets a
  session cookie; `RequireLogin` (ASGI middleware) then refuses *every* request without a
  valid session, except the login page's own static files — deny by default, so a route a
  future Gradio adds is closed too. Gradio's per-route `login_check` stays as a second layer.
- Handlers take the user from `gr.Request.username` (the session), never from an input, and
  every handler re-checks role and active flag in the store (`Service.user` / `Service.admin`).
- Untrusted text goes through `render.safe_markdown` into `gr.Markdown(sanitize_html=True)`.

API (also what `gradio_client` sees; POST `/gradio_api/run/<name>` with `{"data": [...]}` works
too, with the session cookie): next_task, submit, skip, flag, progress, my_labels; for admins
all_labels, overview, quality, export.
"""

from __future__ import annotations

import gc
import json
import math
import re
import shutil
import tempfile
from http.cookies import SimpleCookie
from pathlib import Path

import gradio as gr

from annotation_ui.config import AnnotationConfig
from annotation_ui.i18n import CHOICES, pick_language, t
from annotation_ui.render import prompt_markdown, safe_markdown
from annotation_ui.service import Service
from annotation_ui.store import FLAGS, StoreError
from annotation_ui.tasks import MAX_RESPONSES

LETTERS = "ABCDEFGH"[:MAX_RESPONSES]

# Keyboard shortcuts: letters pick a response, digits rank it, Ctrl+Enter submits, Shift+S skips.
SHORTCUTS_JS = """
<script>
(() => {
  let current = 0;
  // Gradio puts a Group's class on an outer and an inner element: keep the outer ones
  const slots = () => [...document.querySelectorAll('.rk-slot')]
    .filter(e => e.offsetParent !== null && !e.parentElement.closest('.rk-slot'));
  const mark = () => slots().forEach((s, i) => s.classList.toggle('rk-active', i === current));
  document.addEventListener('keydown', (ev) => {
    const el = ev.target, tag = (el.tagName || '').toLowerCase();
    const typing = tag === 'textarea' || el.isContentEditable ||
                   (tag === 'input' && !['radio', 'checkbox', 'button'].includes(el.type));
    if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) {
      document.querySelector('#rk-submit')?.click(); ev.preventDefault(); return;
    }
    if (typing || ev.altKey || ev.ctrlKey || ev.metaKey) return;
    const s = slots();
    if (!s.length) return;
    if (ev.shiftKey && ev.key.toLowerCase() === 's') {
      document.querySelector('#rk-skip')?.click(); ev.preventDefault(); return;
    }
    const letter = 'abcdefgh'.indexOf(ev.key.toLowerCase());
    if (!ev.shiftKey && letter >= 0 && ev.key.length === 1) {
      if (letter < s.length) { current = letter; mark(); s[current].scrollIntoView({block: 'nearest'}); }
      ev.preventDefault(); return;
    }
    if (/^[1-8]$/.test(ev.key)) {
      current = Math.min(current, s.length - 1);
      const box = s[current].querySelector('.rk-rank input[type=radio][value="' + ev.key + '"]');
      if (box) {
        box.click();
        current = Math.min(current + 1, s.length - 1); mark();
      }
      ev.preventDefault();
    }
  });
  new MutationObserver(() => { if (current >= slots().length) current = 0; mark(); })
    .observe(document.documentElement, {childList: true, subtree: true});
})();
</script>
"""

CSS = """
.rk-slot.rk-active { outline: 3px solid #f59e0b; border-radius: 8px; }
.rk-response { max-height: 28em; overflow-y: auto; }
"""


def _fmt(x) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}" if isinstance(x, float) else str(x)


def _guidelines(cfg: AnnotationConfig, domain: str, lang: str) -> str:
    folder = Path(cfg.guidelines_dir)
    for name in (f"{domain}.{lang}.md", f"{domain}.en.md", f"general.{lang}.md", "general.en.md"):
        if (folder / name).is_file():
            return (folder / name).read_text(encoding="utf-8")
    return ""


_API_INFO = re.compile(rb"window\.gradio_api_info = .*?;</script>", re.S)


class RequireLogin:
    """ASGI middleware: without a valid Gradio session cookie only the login page's assets load."""

    PUBLIC = {"/login", "/login/", "/logout", "/favicon.ico", "/theme.css", "/gradio_api/theme.css",
              "/manifest.json", "/robots.txt",
              "/gradio_api/startup-events"}  # Gradio calls this itself once at launch; it returns no data
    PUBLIC_PREFIXES = ("/assets/", "/static/", "/svelte/", "/gradio_api/assets/", "/gradio_api/static/")

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        path = scope["path"]
        root = scope.get("root_path") or ""
        if root and path.startswith(root):
            path = path[len(root):] or "/"
        if self._logged_in(scope):
            return await self.app(scope, receive, send)
        if path == "/":  # the login page; Gradio would also inline the API schema: strip it
            return await self.app(scope, receive, self._without_api_info(send))
        if path in self.PUBLIC or path.startswith(self.PUBLIC_PREFIXES):
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        body = json.dumps({"detail": "Not authenticated: log in first"}).encode()
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _without_api_info(send):
        start: dict = {}
        chunks: list[bytes] = []

        async def wrapped(message):
            if message["type"] == "http.response.start":
                start.update(message)
                return
            if message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if message.get("more_body"):
                    return
                empty = b'window.gradio_api_info = {"named_endpoints": {}, "unnamed_endpoints": {}};</script>'
                body = _API_INFO.sub(empty, b"".join(chunks))
                headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
                headers.append((b"content-length", str(len(body)).encode()))
                await send({**start, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        return wrapped

    @staticmethod
    def _logged_in(scope) -> bool:
        app = scope.get("app")
        raw = b"; ".join(v for k, v in scope.get("headers", []) if k == b"cookie").decode("latin-1")
        if app is None or not raw:
            return False
        cookies = SimpleCookie()
        try:
            cookies.load(raw)
        except Exception:  # a malformed cookie header is simply no session
            return False
        for name in (f"access-token-{app.cookie_id}", f"access-token-unsecure-{app.cookie_id}"):
            if name in cookies and app.tokens.get(cookies[name].value):
                return True
        return False


def build_app(service: Service, cfg: AnnotationConfig) -> gr.Blocks:
    with gr.Blocks(title="rlhfkit · annotation") as demo:
        lang = gr.State(cfg.default_language)
        view = gr.State(None)

        with gr.Row(equal_height=True):
            title = gr.Markdown(elem_id="rk-title")
            who = gr.Markdown(elem_id="rk-who")
            lang_pick = gr.Radio(CHOICES, value=cfg.default_language, elem_id="rk-lang", scale=0, min_width=200)
            logout = gr.Button(link="logout", size="sm", scale=0, min_width=100, elem_id="rk-logout")

        with gr.Tabs() as tabs:
            with gr.Tab(id="label", elem_id="rk-tab-label") as tab_label:
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

            with gr.Tab(id="mine", elem_id="rk-tab-mine") as tab_mine:
                mine_intro = gr.Markdown()
                mine_refresh = gr.Button(size="sm", elem_id="rk-mine-refresh")
                mine_table = gr.Dataframe(interactive=False, elem_id="rk-mine-table", wrap=True)
                with gr.Row():
                    revise_pick = gr.Dropdown([], elem_id="rk-revise-pick", interactive=True)
                    revise_btn = gr.Button(elem_id="rk-revise")

            with gr.Tab(id="admin", visible=False, elem_id="rk-tab-admin") as tab_admin:
                admin_refresh = gr.Button(size="sm", elem_id="rk-admin-refresh")
                overview_title = gr.Markdown()
                totals_md = gr.Markdown(elem_id="rk-totals")
                overview_table = gr.Dataframe(interactive=False, elem_id="rk-overview")
                quality_title = gr.Markdown()
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
                        gen_model = gr.Textbox(value="runs/sft/default/model", elem_id="rk-gen-model")
                        gen_k = gr.Slider(2, MAX_RESPONSES, value=4, step=1, elem_id="rk-gen-k")
                        gen_tokens = gr.Slider(16, 512, value=128, step=16, elem_id="rk-gen-tokens")
                gen_btn = gr.Button(elem_id="rk-generate")
                gen_md = gr.Markdown(elem_id="rk-generate-result")

        # ---------------------------------------------------------------- rendering

        def static_texts(lg: str) -> dict:
            """Every fixed label in language `lg`."""
            out = {
                title: f"## {t('title', lg)}", lang_pick: gr.update(label=t("language", lg), value=lg),
                logout: gr.update(value=t("logout", lg)),
                tab_label: gr.update(label=t("tab_label", lg)), tab_mine: gr.update(label=t("tab_mine", lg)),
                tab_admin: gr.update(label=t("tab_admin", lg)),
                submit_btn: gr.update(value=t("submit", lg)), skip_btn: gr.update(value=t("skip", lg)),
                flag_box: gr.update(label=t("flag", lg)),
                flag_reason: gr.update(label=t("flag_reason", lg), choices=[(t(f"flag_{f}", lg), f) for f in FLAGS]),
                note: gr.update(label=t("note", lg)), flag_btn: gr.update(value=t("flag", lg)),
                shortcuts_md: t("shortcuts", lg), guide_title: f"### {t('guidelines', lg)}",
                mine_intro: t("mine_intro", lg), mine_refresh: gr.update(value=t("refresh", lg)),
                revise_pick: gr.update(label=t("revise_task", lg)), revise_btn: gr.update(value=t("revise", lg)),
                admin_refresh: gr.update(value=t("refresh", lg)), overview_title: f"### {t('admin_overview', lg)}",
                quality_title: f"### {t('admin_quality', lg)}", users_title: f"### {t('admin_users', lg)}",
                export_title: f"### {t('admin_export', lg)}",
                combine: gr.update(label=t("combine", lg),
                                   choices=[(t("combine_all", lg), "all"), (t("combine_majority", lg), "majority")]),
                export_btn: gr.update(value=t("export", lg)), import_title: f"### {t('admin_import', lg)}",
                import_file: gr.update(label=t("import_file", lg)), import_btn: gr.update(value=t("import", lg)),
                generate_title: f"### {t('admin_generate', lg)}", gen_prompts: gr.update(label=t("gen_prompts", lg)),
                gen_model: gr.update(label=t("gen_model", lg)), gen_k: gr.update(label=t("gen_k", lg)),
                gen_tokens: gr.update(label=t("gen_tokens", lg)), gen_btn: gr.update(value=t("generate", lg)),
            }
            for i in range(MAX_RESPONSES):
                out[slot_titles[i]] = f"#### {t('response', lg, letter=LETTERS[i])}"
                out[ranks[i]] = gr.update(label=t("rank", lg))
                out[scores[i]] = gr.update(label=t("score", lg))
            return out

        def task_texts(lg: str, v: dict | None, keep_inputs: bool = False) -> dict:
            """The current task (or 'no task left'); rank/score inputs reset unless `keep_inputs`."""
            out = {}
            if v is None:
                out.update({meta_md: "", prompt_md: t("no_tasks", lg), guide_md: _guidelines(cfg, "general", lg),
                            submit_btn: gr.update(interactive=False), skip_btn: gr.update(interactive=False),
                            flag_btn: gr.update(interactive=False)})
                for i in range(MAX_RESPONSES):
                    out[slot_boxes[i]] = gr.update(visible=False)
                return out
            meta = [t("domain", lg, domain=safe_markdown(v["domain"]))]
            if v["content_notice"]:
                meta.append(t("notice", lg))
            if v["revision_of"]:
                meta.append(t("revising", lg, version=v["revision_of"]))
            out.update({meta_md: "\n\n".join(meta), prompt_md: prompt_markdown(v["prompt"], lg),
                        guide_md: _guidelines(cfg, v["domain"], lg), submit_btn: gr.update(interactive=True),
                        skip_btn: gr.update(interactive=v["revision_of"] is None),
                        flag_btn: gr.update(interactive=True)})
            k = v["k"]
            for i in range(MAX_RESPONSES):
                shown = i < k
                out[slot_boxes[i]] = gr.update(visible=shown)
                if keep_inputs:
                    continue
                out[slot_bodies[i]] = safe_markdown(v["responses"][i]) if shown else ""
                out[ranks[i]] = gr.update(choices=list(range(1, k + 1)) if shown else [],
                                          value=(v["ranks"] or [None] * k)[i] if shown else None)
                out[scores[i]] = gr.update(value=(v["scores"] or [None] * k)[i] if shown else None)
            if not keep_inputs:
                out[note] = ""
                out[flag_reason] = gr.update(value=None)
            return out

        def header(lg: str, name: str) -> dict:
            user = service.user(name)
            p = service.progress(name)
            return {who: t("signed_in", lg, user=safe_markdown(user.name), role=t(f"role_{user.role}", lg)),
                    progress_md: t("progress", lg, **p), tab_admin: gr.update(visible=user.role == "admin")}

        # every output any handler may touch (handlers return dicts over a subset)
        everything = [lang, view, title, who, lang_pick, logout, tab_label, tab_mine, tab_admin, progress_md, status_md,
                      meta_md, prompt_md, *slot_boxes, *slot_titles, *slot_bodies, *ranks, *scores, submit_btn,
                      skip_btn, flag_box, flag_reason, note, flag_btn, shortcuts_md, guide_title, guide_md,
                      mine_intro, mine_refresh, revise_pick, revise_btn, admin_refresh, overview_title,
                      quality_title, users_title, export_title, combine, export_btn, import_title, import_file,
                      import_btn, generate_title, gen_prompts, gen_model, gen_k, gen_tokens, gen_btn]

        def page(lg: str, v: dict | None, name: str, status: str = "", keep_inputs: bool = False,
                 statics: bool = False) -> dict:
            out = static_texts(lg) if statics else {}
            for part in ({lang: lg, view: v, status_md: status}, header(lg, name), task_texts(lg, v, keep_inputs)):
                for comp, update in part.items():  # two updates of one component merge (label + choices)
                    both = isinstance(out.get(comp), dict) and isinstance(update, dict)
                    out[comp] = {**out[comp], **update} if both else update
            return out

        # ---------------------------------------------------------------- handlers

        def on_load(request: gr.Request):
            lg = pick_language(request.headers.get("accept-language"), cfg.default_language)
            return page(lg, service.next_task(request.username), request.username, statics=True)

        def on_language(lg: str, v, request: gr.Request):
            return page(lg, v, request.username, keep_inputs=True, statics=True)

        def after(lg: str, request: gr.Request, message: str):
            return page(lg, service.next_task(request.username), request.username, status=f"✅ {message}")

        def failed(lg: str, v, request: gr.Request, err: Exception):
            return {status_md: "❌ " + t("error", lg, message=safe_markdown(str(err))), lang: lg, view: v,
                    **header(lg, request.username)}

        def on_submit(lg: str, v, request: gr.Request, *values):  # Gradio inserts the request by position
            if v is None:
                return {status_md: t("no_tasks", lg)}
            k = v["k"]
            rank_values, score_values = list(values[:k]), list(values[MAX_RESPONSES:MAX_RESPONSES + k])
            if any(r is None for r in rank_values):
                return failed(lg, v, request, ValueError(t("need_ranks", lg)))
            try:
                res = service.submit(request.username, v["task_id"], rank_values, v["request_id"],
                                     score_values if cfg.scores else None)
            except StoreError as err:
                return failed(lg, v, request, err)
            return after(lg, request, t("ok_submit", lg, **res))

        def on_skip(lg: str, v, request: gr.Request):
            if v is None:
                return {status_md: t("no_tasks", lg)}
            try:
                service.skip(request.username, v["task_id"])
            except StoreError as err:
                return failed(lg, v, request, err)
            return after(lg, request, t("ok_skip", lg, task_id=v["task_id"]))

        def on_flag(lg: str, v, reason: str | None, text: str, request: gr.Request):
            if v is None:
                return {status_md: t("no_tasks", lg)}
            try:
                service.flag(request.username, v["task_id"], reason, text, v["request_id"])
            except StoreError as err:
                return failed(lg, v, request, err)
            return after(lg, request, t("ok_flag", lg, task_id=v["task_id"], flag=t(f"flag_{reason}", lg)))

        def on_mine(lg: str, request: gr.Request):
            rows = service.my_labels(request.username)
            cols = ["task", "version", "ranks", "scores", "flag", "note", "at"]
            table = [[r["task_id"], r["version"], _letters(r["ranks"]), _letters(r["scores"]), r["flag"] or "",
                      r["note"], r["at"]] for r in rows]
            return {mine_table: gr.update(value=table or None, headers=[t(f"col_{c}", lg) for c in cols]),
                    revise_pick: gr.update(choices=sorted({r["task_id"] for r in rows}), value=None)}

        def on_revise(lg: str, v, task_id, request: gr.Request):
            if task_id is None:
                return {status_md: ""}
            try:
                new = service.revise(request.username, task_id)
            except StoreError as err:
                return failed(lg, v, request, err)
            return {**page(lg, new, request.username), tabs: gr.Tabs(selected="label")}

        def on_admin(lg: str, request: gr.Request):
            try:
                ov = service.overview(request.username)
                q = service.quality(request.username)
                users = service.users(request.username)
            except StoreError as err:
                return {totals_md: "❌ " + safe_markdown(str(err))}
            statuses = ["done", "skipped", "flagged", "open", "expired"]
            per = [[name, *[c.get(s, 0) for s in statuses]] for name, c in sorted(ov["per_annotator"].items())]
            majority, gold = q["agreement_with_majority"], q["gold_accuracy"]
            figures = [[t("q_tasks", lg), q["tasks"]], [t("q_alpha", lg), _fmt(q["krippendorff_alpha"])],
                       [t("q_fleiss", lg), _fmt(q["fleiss_kappa"])], [t("q_cohen", lg), _fmt(q["cohen_kappa_mean"])]]
            figures += [[f"{t('q_majority', lg)}: {a}", _fmt(x)] for a, x in majority.items()]
            figures += [[f"{t('q_gold', lg)}: {a}", _fmt(x)] for a, x in gold.items()]
            return {totals_md: t("totals", lg, **{k: v for k, v in ov.items() if k != "per_annotator"}),
                    overview_table: gr.update(value=per or None,
                                              headers=[t("col_annotator", lg)] + [t(f"col_{s}", lg) for s in statuses]),
                    quality_table: gr.update(value=figures, headers=[t("col_figure", lg), t("col_value", lg)]),
                    users_table: gr.update(value=[[u["name"], t(f"role_{u['role']}", lg), "✓" if u["active"] else "—"]
                                                  for u in users],
                                           headers=[t("col_name", lg), t("col_role", lg), t("col_active", lg)])}

        def on_export(lg: str, how: str, request: gr.Request):
            try:
                out, counts = service.export(request.username, how or "all")
            except StoreError as err:
                return {export_md: "❌ " + safe_markdown(str(err)), export_files: None}
            # downloads are served from copies in a fresh temporary folder (Gradio moves them into
            # its cache from there), so export_dir itself never has to be opened to Gradio's file route
            tmp = Path(tempfile.mkdtemp(prefix="rlhfkit-export-"))
            files = [shutil.copy(out / name, tmp / name) for name in ("pairs.jsonl", "rankings.jsonl")]
            return {export_md: t("exported", lg, path=str(out), **counts), export_files: [str(f) for f in files]}

        def on_import(lg: str, upload, request: gr.Request):
            if upload is None:
                return {import_md: ""}
            try:
                n = service.import_tasks(request.username, upload if isinstance(upload, str) else upload.name)
            except Exception as err:  # Forbidden, DataError (file:line), an unreadable file: one line
                return {import_md: "❌ " + safe_markdown(str(err))}
            return {import_md: t("imported", lg, count=n)}

        def on_uploaded(lg: str, upload):
            """The upload finished (the file is on the server): say so — the signal to go on."""
            if upload is None:
                return ""
            return t("file_ready", lg, name=safe_markdown(Path(upload if isinstance(upload, str) else upload.name).name))

        def on_generate(lg: str, upload, model: str, k, tokens, request: gr.Request,
                        progress=gr.Progress(track_tqdm=True)):  # noqa: B008 - Gradio's progress-bar idiom  # the generation's tqdm bar, in the page
            if upload is None:
                return {gen_md: ""}
            try:
                n = service.generate_tasks(request.username, upload if isinstance(upload, str) else upload.name,
                                           model.strip(), k, tokens)
            except Exception as err:  # Forbidden, DataError (file:line), a model that can't load: one line
                return {gen_md: "❌ " + safe_markdown(str(err))}
            return {gen_md: t("generated", lg, count=n)}

        private = {"api_visibility": "private"}
        demo.load(on_load, None, everything, **private)
        lang_pick.input(on_language, [lang_pick, view], everything, **private)  # user clicks only, not on_load's update
        submit_btn.click(on_submit, [lang, view, *ranks, *scores], everything, concurrency_limit=cfg.concurrency_limit,
                         **private)
        skip_btn.click(on_skip, [lang, view], everything, concurrency_limit=cfg.concurrency_limit, **private)
        flag_btn.click(on_flag, [lang, view, flag_reason, note], everything, concurrency_limit=cfg.concurrency_limit,
                       **private)
        mine_refresh.click(on_mine, [lang], [mine_table, revise_pick], **private)
        tab_mine.select(on_mine, [lang], [mine_table, revise_pick], **private)
        admin_outputs = [totals_md, overview_table, quality_table, users_table]
        admin_refresh.click(on_admin, [lang], admin_outputs, **private)
        tab_admin.select(on_admin, [lang], admin_outputs, **private)
        export_btn.click(on_export, [lang, combine], [export_md, export_files], **private)
        revise_btn.click(on_revise, [lang, view, revise_pick], [*everything, tabs], **private)
        import_btn.click(on_import, [lang, import_file], [import_md], **private)
        import_file.upload(on_uploaded, [lang, import_file], [import_md], **private)
        gen_prompts.upload(on_uploaded, [lang, gen_prompts], [gen_md], **private)
        gen_btn.click(on_generate, [lang, gen_prompts, gen_model, gen_k, gen_tokens], [gen_md], **private)

        # ------------------------------------------------------------ the API
        add_api(service, cfg)
    return demo


def _letters(values) -> str:
    """Ranks/scores in display order → 'A:1 B:2 C:1'."""
    if not values:
        return ""
    return " ".join(f"{LETTERS[i]}:{v}" for i, v in enumerate(values))


def _json_safe(x):
    """NaN (an undefined agreement figure) → None, at any depth; JSON has no NaN."""
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


def add_api(service: Service, cfg: AnnotationConfig) -> None:
    """Named endpoints for scripts and `gradio_client`; the user is always the session's."""

    def call(method, request: gr.Request, *args):
        """`method(session user, *args)`; a refusal becomes the client's error message."""
        try:
            return method(request.username, *args)
        except StoreError as err:
            raise gr.Error(str(err), print_exception=False) from None

    def next_task(request: gr.Request) -> dict | None:
        """The caller's open task, or a new one (None when no work is left)."""
        view = call(service.next_task, request)
        return None if view is None else {k: v for k, v in view.items() if k != "order"}

    def submit(task_id: int, ranks: list, request_id: str, scores: list | None = None, request: gr.Request = None) -> dict:
        """Ranks (1 = best, ties allowed) in the order next_task returned the responses."""
        return call(service.submit, request, task_id, ranks, request_id, scores)

    def skip(task_id: int, request: gr.Request) -> dict:
        return call(service.skip, request, task_id)

    def flag(task_id: int, flag: str, note: str, request_id: str, request: gr.Request) -> dict:
        return call(service.flag, request, task_id, flag, note, request_id)

    def progress(request: gr.Request) -> dict:
        return call(service.progress, request)

    def my_labels(request: gr.Request) -> list:
        return call(service.my_labels, request)

    def all_labels(request: gr.Request) -> list:
        """Admins only: everybody's labels, every version."""
        return call(service.all_labels, request)

    def overview(request: gr.Request) -> dict:
        return call(service.overview, request)

    def quality(request: gr.Request) -> dict:
        return _json_safe(call(service.quality, request))

    def export(combine: str, request: gr.Request) -> dict:
        out, counts = call(service.export, request, combine)
        return {"path": str(out), **counts}

    for fn in (next_task, submit, skip, flag, progress, my_labels, all_labels, overview, quality, export):
        gr.api(fn, api_name=fn.__name__, queue=False, concurrency_limit=cfg.concurrency_limit)


def serve(cfg: AnnotationConfig, store=None, block: bool = True):
    """Start the server (blocking unless `block=False`); returns (app, url)."""
    from starlette.middleware import Middleware

    from annotation_ui.store import Store

    store = store or Store(cfg.db)
    service = Service(store, cfg)
    demo = build_app(service, cfg)
    demo.queue(default_concurrency_limit=cfg.concurrency_limit)
    app, url, _ = demo.launch(
        server_name=cfg.host, server_port=cfg.port, auth=service.login,
        auth_message="rlhfkit annotation — log in / 登录", root_path=cfg.root_path or None,
        ssr_mode=False, show_error=True, quiet=True, footer_links=["api"], head=SHORTCUTS_JS, css=CSS,
        app_kwargs={"middleware": [Middleware(RequireLogin)]}, max_threads=max(40, cfg.concurrency_limit + 8),
        prevent_thread_lock=True, enable_monitoring=False, pwa=False, mcp_server=False,
    )
    # Everything built so far lives as long as the server: keep it out of the garbage
    # collector's full passes, which otherwise stall every request for ~0.1 s now and then.
    gc.collect()
    gc.freeze()
    if not store.users():
        print("no users yet — add an admin: python -m annotation_ui --db DB users add NAME --role admin", flush=True)
    if block:
        demo.block_thread()
    return app, url
