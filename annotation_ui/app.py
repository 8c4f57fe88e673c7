"""The labelling page (Gradio 6 Blocks) and its API, on top of `Service`. Each tab is its own
module (`page_label`, `page_mine`, `page_admin`) that builds its components and wires its own
events, listing exactly the outputs they change; this one composes them under a header.

Security model:
- Gradio's own login (`launch(auth=Service.login)`, bcrypt-checked against the store) sets a
  session cookie; `RequireLogin` (`login.py`, ASGI middleware) then refuses *every* request without a
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
import math

import gradio as gr

from annotation_ui.config import AnnotationConfig
from annotation_ui.i18n import CHOICES, pick_language, t
from annotation_ui.login import RequireLogin
from annotation_ui.page_admin import build_admin_tab
from annotation_ui.page_label import build_label_tab
from annotation_ui.page_mine import build_mine_tab
from annotation_ui.render import safe_markdown
from annotation_ui.service import Service
from annotation_ui.store import StoreError

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


def build_app(service: Service, cfg: AnnotationConfig) -> gr.Blocks:
    """The page: a header (title, who is signed in, language, log out) over three tabs, each built
    and wired by its own module, plus the named API endpoints."""
    with gr.Blocks(title="rlhfkit · annotation") as demo:
        lang = gr.State(cfg.default_language)
        view = gr.State(None)  # the task on screen, as the service returned it

        with gr.Row(equal_height=True):
            title = gr.Markdown(elem_id="rk-title")
            who = gr.Markdown(elem_id="rk-who")
            lang_pick = gr.Radio(CHOICES, value=cfg.default_language, elem_id="rk-lang", scale=0, min_width=200)
            logout = gr.Button(link="logout", size="sm", scale=0, min_width=100, elem_id="rk-logout")

        with gr.Tabs() as tabs:
            label = build_label_tab(service, cfg, lang, view)
            mine = build_mine_tab(service, lang, view, label, tabs)
            admin = build_admin_tab(service, lang)

        def whole_page(lg: str, v, name: str, keep_inputs: bool = False) -> dict:
            """Every fixed text in `lg`, who is signed in, and the task on screen."""
            user = service.user(name)
            out = {title: f"## {t('title', lg)}", lang_pick: gr.update(label=t("language", lg), value=lg),
                   logout: gr.update(value=t("logout", lg)),
                   who: t("signed_in", lg, user=safe_markdown(user.name), role=t(f"role_{user.role}", lg))}
            for part in (label.texts(lg), mine.texts(lg), admin.texts(lg), label.show(lg, v, name, keep_inputs=keep_inputs)):
                for comp, update in part.items():  # two updates of one component merge (label + choices)
                    both = isinstance(out.get(comp), dict) and isinstance(update, dict)
                    out[comp] = {**out[comp], **update} if both else update
            # the admin tab's visibility after its label: an update must not undo the other
            out[admin.tab] = {**out.get(admin.tab, {}), **gr.update(visible=user.role == "admin")}
            return out

        outputs = [title, who, lang_pick, logout, *label.outputs, *mine.outputs, *admin.outputs]
        outputs = list(dict.fromkeys(outputs))  # a component listed by two parts goes once

        def on_load(request: gr.Request):
            lg = pick_language(request.headers.get("accept-language"), cfg.default_language)
            return whole_page(lg, service.next_task(request.username), request.username)

        def on_language(lg: str, v, request: gr.Request):
            return whole_page(lg, v, request.username, keep_inputs=True)

        private = {"api_visibility": "private"}
        demo.load(on_load, None, outputs, **private)
        lang_pick.input(on_language, [lang_pick, view], outputs, **private)  # user clicks only, not on_load's update
        add_api(service, cfg)
    return demo


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
