"""Every label of the page in English and Simplified Chinese. `t(key, lang, **fields)`.

A key missing in one language is a bug caught by the tests (both tables have the same keys).
"""

from __future__ import annotations

EN = {
    "title": "Rank the responses",
    "language": "Language",
    "signed_in": "Signed in as **{user}** ({role})",
    "logout": "Log out",
    "progress": "Done: **{done}** · Left: **{left}**",
    "tab_label": "Label",
    "tab_mine": "My labels",
    "tab_admin": "Admin",
    "domain": "Domain: **{domain}**",
    "notice": "⚠️ Content notice: this task may contain offensive or harmful text (it comes from red-teaming data). "
              "Flag it as unsafe if you would rather not rank it.",
    "prompt": "Prompt",
    "role_user": "User",
    "role_assistant": "Assistant",
    "role_system": "System",
    "role_admin": "admin",
    "role_annotator": "annotator",
    "response": "Response {letter}",
    "rank": "Rank (1 = best, ties allowed)",
    "score": "Score 1–5 (optional)",
    "submit": "Submit ranking",
    "skip": "Skip",
    "flag": "Flag",
    "flag_reason": "Flag reason",
    "flag_unsafe": "Unsafe",
    "flag_not_rankable": "Not rankable",
    "flag_broken": "Broken",
    "note": "Note (for flags)",
    "guidelines": "Guidelines",
    "shortcuts": "Keyboard: **A–H** pick a response · **1–8** give it a rank (moves to the next) · "
                 "**Ctrl+Enter** submit · **Shift+S** skip. Shortcuts pause while you type in a text box.",
    "no_tasks": "No task left for you. Thank you! Come back later or ask the admin for more.",
    "revising": "Revising your label (version {version}); submitting keeps the old version.",
    "ok_submit": "Saved (task {task_id}, version {version}).",
    "ok_skip": "Skipped task {task_id}.",
    "ok_flag": "Flagged task {task_id} as {flag}.",
    "error": "Not saved: {message}",
    "need_ranks": "give every response a rank first.",
    "mine_intro": "Your own labels, every version (ranks in the order you saw the responses).",
    "refresh": "Refresh",
    "revise_task": "Task to revise",
    "revise": "Open for revision",
    "admin_overview": "Progress",
    "admin_quality": "Quality",
    "admin_users": "Users",
    "admin_export": "Export preference data",
    "combine": "Combine votes",
    "combine_all": "every vote",
    "combine_majority": "majority only",
    "export": "Export",
    "exported": "Exported {pairs} pairs and {rankings} rankings to `{path}`.",
    "admin_import": "Load tasks",
    "import_file": "Task file (JSONL or HH)",
    "import": "Import",
    "imported": "Imported {count} tasks.",
    "file_ready": "File ready: {name}",
    "admin_generate": "Generate candidates with a model",
    "gen_prompts": "Prompt file (JSONL: prompt, domain)",
    "gen_model": "Model (folder, or 'default')",
    "gen_k": "Candidates per prompt (K)",
    "gen_tokens": "Max new tokens",
    "generate": "Generate tasks",
    "generated": "Generated {count} tasks.",
    "col_task": "task", "col_version": "version", "col_ranks": "ranks", "col_scores": "scores", "col_flag": "flag",
    "col_note": "note", "col_at": "time", "col_annotator": "annotator", "col_done": "done", "col_skipped": "skipped",
    "col_flagged": "flagged", "col_open": "open", "col_expired": "expired", "col_name": "name", "col_role": "role",
    "col_active": "active", "col_figure": "figure", "col_value": "value",
    "q_tasks": "tasks with ≥ 1 ranking", "q_alpha": "Krippendorff's α (ordinal, rankings)",
    "q_fleiss": "Fleiss' κ (pairwise decisions)", "q_cohen": "mean Cohen's κ (annotator pairs)",
    "q_majority": "agreement with the majority", "q_gold": "gold accuracy",
    "totals": "Tasks: **{tasks}** (gold: {gold_tasks}) · labelled tasks: **{labelled_tasks}** · label rows: **{labels}**",
}

ZH = {
    "title": "为回答排序",
    "language": "语言",
    "signed_in": "当前用户：**{user}**（{role}）",
    "logout": "退出登录",
    "progress": "已完成：**{done}** · 剩余：**{left}**",
    "tab_label": "标注",
    "tab_mine": "我的标注",
    "tab_admin": "管理",
    "domain": "领域：**{domain}**",
    "notice": "⚠️ 内容提示：此任务可能含有冒犯性或有害的文字（来自红队测试数据）。如不愿排序，可将其标记为“不安全”。",
    "prompt": "提示",
    "role_user": "用户",
    "role_assistant": "助手",
    "role_system": "系统",
    "role_admin": "管理员",
    "role_annotator": "标注员",
    "response": "回答 {letter}",
    "rank": "名次（1 = 最好，可并列）",
    "score": "评分 1–5（可选）",
    "submit": "提交排序",
    "skip": "跳过",
    "flag": "标记",
    "flag_reason": "标记原因",
    "flag_unsafe": "不安全",
    "flag_not_rankable": "无法排序",
    "flag_broken": "内容损坏",
    "note": "备注（用于标记）",
    "guidelines": "标注指南",
    "shortcuts": "快捷键：**A–H** 选择回答 · **1–8** 给出名次（自动跳到下一个）· **Ctrl+Enter** 提交 · "
                 "**Shift+S** 跳过。在文本框中输入时快捷键暂停。",
    "no_tasks": "暂时没有分配给您的任务。谢谢！请稍后再来，或联系管理员添加任务。",
    "revising": "正在修改您的标注（第 {version} 版）；提交后旧版本仍会保留。",
    "ok_submit": "已保存（任务 {task_id}，第 {version} 版）。",
    "ok_skip": "已跳过任务 {task_id}。",
    "ok_flag": "已将任务 {task_id} 标记为 {flag}。",
    "error": "未保存：{message}",
    "need_ranks": "请先为每个回答给出名次。",
    "mine_intro": "您自己的全部标注及其各个版本（名次按您看到的回答顺序排列）。",
    "refresh": "刷新",
    "revise_task": "要修改的任务",
    "revise": "打开并修改",
    "admin_overview": "进度",
    "admin_quality": "质量",
    "admin_users": "用户",
    "admin_export": "导出偏好数据",
    "combine": "合并投票方式",
    "combine_all": "每一票",
    "combine_majority": "仅多数票",
    "export": "导出",
    "exported": "已导出 {pairs} 个偏好对和 {rankings} 条排序到 `{path}`。",
    "admin_import": "导入任务",
    "import_file": "任务文件（JSONL 或 HH）",
    "import": "导入",
    "imported": "已导入 {count} 个任务。",
    "file_ready": "文件已就绪：{name}",
    "admin_generate": "用模型生成候选回答",
    "gen_prompts": "提示文件（JSONL：prompt、domain）",
    "gen_model": "模型（文件夹，或 default）",
    "gen_k": "每个提示的候选数（K）",
    "gen_tokens": "最多生成的 token 数",
    "generate": "生成任务",
    "generated": "已生成 {count} 个任务。",
    "col_task": "任务", "col_version": "版本", "col_ranks": "名次", "col_scores": "评分", "col_flag": "标记",
    "col_note": "备注", "col_at": "时间", "col_annotator": "标注员", "col_done": "已完成", "col_skipped": "已跳过",
    "col_flagged": "已标记", "col_open": "进行中", "col_expired": "已过期", "col_name": "用户名", "col_role": "角色",
    "col_active": "启用", "col_figure": "指标", "col_value": "数值",
    "q_tasks": "至少有一个排序的任务", "q_alpha": "Krippendorff α（序数，排序）",
    "q_fleiss": "Fleiss κ（两两比较）", "q_cohen": "平均 Cohen κ（标注员两两之间）",
    "q_majority": "与多数意见一致率", "q_gold": "黄金任务正确率",
    "totals": "任务：**{tasks}**（黄金任务：{gold_tasks}）· 已标注任务：**{labelled_tasks}** · 标注记录：**{labels}**",
}

TABLES = {"en": EN, "zh-CN": ZH}
CHOICES = [("English", "en"), ("中文", "zh-CN")]


def t(key: str, lang: str = "en", **fields) -> str:
    text = TABLES.get(lang, EN)[key]
    return text.format(**fields) if fields else text


def pick_language(accept_language: str | None, default: str = "en") -> str:
    """The first of en / zh the browser's Accept-Language lists; else `default`."""
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("zh"):
            return "zh-CN"
        if tag.startswith("en"):
            return "en"
    return default
