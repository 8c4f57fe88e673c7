"""Untrusted text (prompts, model responses) → Markdown that cannot carry live HTML or script.

Two layers: here every `<`, `>` and `&` is escaped, so raw HTML (`<img onerror=…>`,
`<script>`) shows as the literal text it is, and link targets with a script-capable scheme
(`javascript:`, `vbscript:`, `data:`) lose their colon, so they become dead relative links;
then Gradio's Markdown component sanitizes the rendered HTML again (`sanitize_html=True`).
Markdown itself (code blocks, lists, emphasis) still renders: code answers stay readable.
"""

from __future__ import annotations

import html
import re

from annotation_ui.i18n import t

_SCHEME = re.compile(r"(?i)\b(javascript|vbscript|data|file)(\s*):")


def safe_markdown(text: str) -> str:
    escaped = html.escape(str(text), quote=False)
    return _SCHEME.sub(lambda m: f"{m.group(1)}{m.group(2)}&#58;", escaped)


def prompt_markdown(messages: list[dict], lang: str) -> str:
    """A chat prompt as alternating speaker blocks (the last one is the user's turn)."""
    blocks = []
    for m in messages:
        role = m.get("role", "user")
        name = t(f"role_{role}", lang) if role in ("user", "assistant", "system") else safe_markdown(role)
        blocks.append(f"**{name}:**\n\n{safe_markdown(m.get('content', ''))}")
    return "\n\n---\n\n".join(blocks)
