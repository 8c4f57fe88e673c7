"""How each constraint type is asked for, in English and Chinese (several phrasings each), and the
arguments the generator draws — sized so that a small chat model writing 64 tokens (about 45
English words or 40–60 汉字) can sometimes meet them: a constraint never met teaches nothing.
"""

from __future__ import annotations

import random

RELATION_WORDS = {"en": {"at_least": "at least", "at_most": "at most", "exactly": "exactly"},
                  "zh": {"at_least": "至少", "at_most": "不超过", "exactly": "恰好"}}
LANGUAGE_NAMES = {"en": {"zh": "Chinese", "en": "English"}, "zh": {"zh": "中文", "en": "英文"}}

# Sentences that end in a quoted phrase ending in punctuation ("Thank you.") take no period of their own.
# {rel} relation, {n} count, {s} plural 's' for n, {language}, {phrase}, {keyword}, {keywords} (all of them),
# {keywords_or} (any of them), {letter}, {marker}, {request}
TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "word_count": {
        "en": ("Answer in {rel} {n} words.", "Your whole reply must be {rel} {n} words long."),
        "zh": ("请用{rel} {n} 个单词作答。", "回答的单词数必须{rel} {n} 个。")},
    "sentence_count": {
        "en": ("Answer in {rel} {n} sentence{s}.", "Use {rel} {n} sentence{s} in your reply."),
        "zh": ("请用{rel} {n} 句话回答。", "回答必须包含{rel} {n} 个句子。")},
    "paragraph_count": {
        "en": ("Write {rel} {n} paragraph{s}, separated by blank lines.",
               "Your reply should have {rel} {n} paragraph{s}; separate paragraphs with an empty line."),
        "zh": ("回答分为{rel} {n} 段，段与段之间空一行。", "请写{rel} {n} 个段落，段落之间用空行分隔。")},
    "chinese_char_count": {
        "en": ("Use {rel} {n} Chinese characters.", "Your reply must contain {rel} {n} Chinese characters (汉字)."),
        "zh": ("回答{rel} {n} 个汉字。", "回答中的汉字数量必须{rel} {n} 个。")},
    "char_count": {
        "en": ("Keep your reply to {rel} {n} characters, not counting spaces.",
               "Write {rel} {n} characters (spaces are not counted)."),
        "zh": ("回答{rel} {n} 个字符（空格不计）。", "全文字符数（不含空格）必须{rel} {n} 个。")},
    "response_language": {
        "en": ("Reply in {language}.", "Your entire reply must be in {language}."),
        "zh": ("请用{language}回答。", "整个回答必须使用{language}。")},
    "lowercase": {
        "en": ("Write your entire reply in lowercase letters, with no capital letters.",
               "Use only lowercase letters in your reply."),
        "zh": ("回答中的英文字母必须全部小写，不要出现大写字母。", "请全部使用小写英文字母书写。")},
    "uppercase": {
        "en": ("Write your entire reply in capital letters.", "Your reply must be in all uppercase (CAPITAL) letters."),
        "zh": ("回答中的英文字母必须全部大写。", "请全部使用大写英文字母书写。")},
    "letter_frequency": {
        "en": ('The letter "{letter}" should appear {rel} {n} time{s} in your reply.',
               "Use the letter {letter} {rel} {n} time{s}."),
        "zh": ("回答中字母“{letter}”要出现{rel} {n} 次。", "请让字母 {letter} 在回答中出现{rel} {n} 次。")},
    "capital_word_frequency": {
        "en": ("Use {rel} {n} word{s} written in all capital letters.", "Words in ALL CAPS should appear {rel} {n} time{s}."),
        "zh": ("回答中全大写的英文单词要出现{rel} {n} 次。", "请使用{rel} {n} 个全部大写的英文单词。")},
    "starts_with": {
        "en": ('Start your reply with "{phrase}".', 'Begin your answer with the words "{phrase}".'),
        "zh": ("回答必须以“{phrase}”开头。", "请用“{phrase}”作为回答的开头。")},
    "ends_with": {
        "en": ('End your reply with the exact phrase "{phrase}"', 'Finish your answer with "{phrase}" and nothing after it.'),
        "zh": ("回答必须以“{phrase}”结尾。", "请在回答的最后写上“{phrase}”，之后不要再写任何内容。")},
    "include_keywords": {
        "en": ("Include the keywords {keywords}.", "Make sure your reply mentions {keywords}."),
        "zh": ("回答中必须包含关键词{keywords}。", "请在回答中提到{keywords}。")},
    "exclude_keywords": {
        "en": ("Do not use the word{s} {keywords_or}.", "Avoid {keywords_or} in your reply."),
        "zh": ("回答中不要出现{keywords_or}。", "请避免使用{keywords_or}。")},
    "keyword_frequency": {
        "en": ('Use the word "{keyword}" {rel} {n} time{s}.',
               'The word "{keyword}" should appear {rel} {n} time{s} in your reply.'),
        "zh": ("“{keyword}”这个词要出现{rel} {n} 次。", "回答中“{keyword}”一词的出现次数必须{rel} {n} 次。")},
    "repeat_request": {
        "en": ('First repeat the request "{request}" word for word without change, then give your answer.',
               'Before answering, copy this question exactly: "{request}" Then answer it.'),
        "zh": ("请先一字不差地重复这个问题：“{request}”然后再回答。", "回答前先原样复述问题“{request}”，再给出答案。")},
    "end_with_question": {
        "en": ("End your reply with a question.", "Finish your answer with a question mark."),
        "zh": ("回答的最后一句必须是问句。", "请以一个问题结束你的回答。")},
    "no_commas": {
        "en": ("Do not use any commas in your reply.", "Your entire reply must contain no commas."),
        "zh": ("回答中不要使用任何逗号（包括“，”和“、”）。", "整个回答不能出现逗号或顿号。")},
    "no_digits": {
        "en": ("Do not use any digits; write numbers as words.", "Your reply must not contain any digits (0-9)."),
        "zh": ("回答中不要出现阿拉伯数字，数字请用汉字书写。", "不要使用任何阿拉伯数字（0-9）。")},
    "bullet_count": {
        "en": ('Use exactly {n} markdown bullet point{s} (lines starting with "* " or "- ").',
               'Format your answer as exactly {n} bullet point{s}, each on its own line starting with "* ".'),
        "zh": ("回答必须恰好包含 {n} 个 markdown 项目符号（以“* ”或“- ”开头的行）。",
               "请用恰好 {n} 个要点作答，每个要点单独一行，以“- ”开头。")},
    "numbered_list": {
        "en": ("Answer as a numbered list (1., 2., ...) with {rel} {n} item{s}.",
               'Give {rel} {n} numbered item{s}, each line starting with its number like "1."'),
        "zh": ("请用编号列表回答，{rel} {n} 项（1. 2. ……）。", "回答必须是{rel} {n} 项的编号列表，每行以“1.”这样的序号开头。")},
    "quoted": {
        "en": ("Wrap your entire reply in double quotation marks.", "Put your whole answer inside double quotes."),
        "zh": ("请用双引号把整个回答括起来。", "整个回答要放在一对双引号“”里。")},
    "json_only": {
        "en": ("Your entire output must be valid JSON; you may wrap it in a ```json code block.",
               "Answer only with a JSON object and nothing else."),
        "zh": ("整个回答必须是合法的 JSON，可以放在 ```json 代码块中。", "只用一个 JSON 对象作答，不要写其他内容。")},
    "title": {
        "en": ("Give your answer a title wrapped in double angular brackets, such as <<my title>>.",
               "Include a title in double angle brackets, like <<title>>."),
        "zh": ("请给回答加一个标题，用双尖括号括起来，例如<<标题>>。", "回答中要有一个用双尖括号包围的标题，如<<我的标题>>。")},
    "postscript": {
        "en": ('At the end of your reply, add a postscript starting with "{marker}"',
               'Add a postscript on its own line, beginning with "{marker}"'),
        "zh": ("在回答末尾加一段以“{marker}”开头的附言。", "请另起一行，写一段以“{marker}”开头的附言。")},
    "highlighted_sections": {
        "en": ("Highlight at least {n} section{s} with markdown, e.g. *highlighted section*.",
               "Use markdown to emphasise at least {n} part{s} of your answer, like *this*."),
        "zh": ("请用 markdown 突出显示至少 {n} 处内容，例如 *重点内容*。", "回答中至少用 *星号* 标出 {n} 处重点。")},
    "placeholders": {
        "en": ("Include at least {n} placeholder{s} in square brackets, such as [name].",
               "Your reply must contain at least {n} placeholder{s} written in square brackets, like [address]."),
        "zh": ("回答中至少包含 {n} 个用方括号表示的占位符，例如 [姓名]。", "请使用至少 {n} 个方括号占位符，如 [地址]。")},
    "two_responses": {
        "en": ("Give two different responses, separated by a line of six asterisks (******).",
               "Write two different answers with a line containing only ****** between them."),
        "zh": ("请给出两个不同的回答，中间用一行六个星号 ****** 分隔。", "写两个不同的答案，两个答案之间单独一行写 ******。")},
}


def _quote(word: str, lang: str) -> str:
    return f'"{word}"' if lang == "en" else f"“{word}”"


def _join(words: list[str], lang: str, last: str) -> str:
    quoted = [_quote(w, lang) for w in words]
    if len(quoted) <= 1:
        return "".join(quoted)
    sep, word = (", ", f" {last} ") if lang == "en" else ("、", {"and": "和", "or": "或"}[last])
    return sep.join(quoted[:-1]) + word + quoted[-1]


def render(constraint: dict, lang: str, phrasing: int) -> str:
    """The sentence that asks for `constraint` in `lang` ('en' or 'zh'), with phrasing number `phrasing`."""
    c = constraint
    n = c.get("n", len(c.get("keywords", [])))
    fields = {
        "rel": RELATION_WORDS[lang].get(c.get("relation", ""), ""), "n": n, "s": "" if n == 1 else "s",
        "language": LANGUAGE_NAMES[lang].get(c.get("language", ""), ""),
        "keywords": _join(c.get("keywords", []), lang, "and"), "keywords_or": _join(c.get("keywords", []), lang, "or"),
        **{k: c.get(k, "") for k in ("phrase", "keyword", "letter", "marker", "request")},
    }
    return TEMPLATES[c["type"]][lang][phrasing].format(**fields)


# --- arguments ------------------------------------------------------------------------------

STARTS = {"en": ("Sure", "Yes", "Hello", "Well", "Here is my answer", "Good question", "In short", "My answer is"),
          "zh": ("好的", "你好", "简单来说", "我的回答是", "总的来说", "这是个好问题")}
ENDS = {"en": ("Hope this helps.", "Thank you.", "Is there anything else?", "That is all.", "Good luck!"),
        "zh": ("希望对你有帮助。", "谢谢。", "还有其他问题吗？", "就这些。", "祝你好运！")}
KEYWORDS = {"en": ("important", "example", "simple", "because", "first", "helpful", "easy", "time"),
            "zh": ("重要", "例如", "简单", "因为", "首先", "建议", "注意", "方法")}
DOMAIN_KEYWORDS = {
    "en": {"general": ("people", "day", "good"), "medical": ("doctor", "health", "rest"),
           "finance": ("money", "risk", "save"), "legal": ("law", "contract", "rights"),
           "code": ("code", "function", "Python"), "math": ("answer", "total", "step")},
    "zh": {"general": ("时间", "生活", "习惯"), "medical": ("医生", "健康", "休息"), "finance": ("钱", "风险", "储蓄"),
           "legal": ("法律", "合同", "权利"), "code": ("代码", "函数", "程序"), "math": ("答案", "一共", "计算")},
}
AVOID = {"en": ("very", "really", "just", "actually", "basically", "think"),
         "zh": ("非常", "其实", "可能", "就是", "我们", "一些")}
MARKERS = {"en": ("P.S.",), "zh": ("附言", "P.S.")}
# relation → counts to draw from, per type (and reply language where the unit differs)
COUNTS = {
    "word_count": {"at_most": (15, 20, 25, 30, 40, 50, 60), "at_least": (5, 10, 15, 20, 25, 30), "exactly": (5, 8, 10, 12)},
    "sentence_count": {"at_most": (1, 2, 3), "at_least": (2, 3), "exactly": (1, 2, 3)},
    "paragraph_count": {"at_most": (1, 2), "at_least": (2,), "exactly": (1, 2)},
    "chinese_char_count": {"at_most": (20, 30, 40, 50, 60, 80), "at_least": (10, 15, 20, 30)},
    "char_count": {"at_most": (100, 150, 200), "at_least": (30, 60, 100)},
    "char_count_zh": {"at_most": (30, 40, 60), "at_least": (10, 20, 30)},
    "letter_frequency": {"at_least": (3, 5, 8, 10)},
    "letter_frequency_rare": {"at_most": (0, 1)},
    "capital_word_frequency": {"at_least": (1, 2), "at_most": (1, 2)},
    "keyword_frequency": {"at_least": (1, 2, 3), "at_most": (1, 2), "exactly": (1, 2)},
    "numbered_list": {"at_least": (2, 3), "exactly": (2, 3, 4)},
}


def _counted(rng: random.Random, table: str) -> dict:
    relation = rng.choice(sorted(COUNTS[table]))
    return {"relation": relation, "n": rng.choice(COUNTS[table][relation])}


def draw_args(kind: str, rng: random.Random, reply_lang: str, domain: str, request: str) -> dict:
    """Arguments for a constraint of type `kind` on a reply in `reply_lang` to a `domain` prompt whose
    text (before any constraint) is `request`."""
    words = KEYWORDS[reply_lang] + DOMAIN_KEYWORDS[reply_lang][domain]
    if kind in ("word_count", "sentence_count", "paragraph_count", "chinese_char_count", "capital_word_frequency",
                "numbered_list"):
        return _counted(rng, kind)
    if kind == "char_count":
        return _counted(rng, "char_count" if reply_lang == "en" else "char_count_zh")
    if kind == "letter_frequency":
        if rng.random() < 0.7:
            return {"letter": rng.choice("eatoinsr"), **_counted(rng, "letter_frequency")}
        return {"letter": rng.choice("zqxj"), **_counted(rng, "letter_frequency_rare")}
    if kind == "response_language":
        return {"language": reply_lang}
    if kind == "starts_with":
        return {"phrase": rng.choice(STARTS[reply_lang])}
    if kind == "ends_with":
        return {"phrase": rng.choice(ENDS[reply_lang])}
    if kind == "include_keywords":
        return {"keywords": rng.sample(words, rng.choice((1, 2)))}
    if kind == "exclude_keywords":
        return {"keywords": rng.sample(AVOID[reply_lang], rng.choice((1, 2)))}
    if kind == "keyword_frequency":
        return {"keyword": rng.choice(words), **_counted(rng, "keyword_frequency")}
    if kind == "repeat_request":
        return {"request": request}
    if kind == "bullet_count":
        return {"n": rng.choices((1, 2, 3, 4), weights=(0.15, 0.35, 0.35, 0.15))[0]}
    if kind == "postscript":
        return {"marker": rng.choice(MARKERS[reply_lang])}
    if kind == "highlighted_sections":
        return {"n": rng.choice((1, 2, 3))}
    if kind == "placeholders":
        return {"n": rng.choice((1, 2))}
    return {}
