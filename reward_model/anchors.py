"""Anchor pairs: preferences no reader disputes, made from the stage's own training prompts.

A reward model trained only on the user's pairs can learn what those pairs never contradict —
on HH's harmless dialogues, that an empty reply or "What a great question!" beats an answer
(docs/bench/rm-anchors-2026-12-07.md). Anchors add, for a seeded share of the training prompts,
one pair each: the prompt's best reply (preferred) against one bad reply of a sanity-suite kind
(`common/rewards/sanity.py`): `empty`, `deflection`, `refusal`, `other_prompt`, `echo` or `cut`,
the kinds taken in turn. Deflections and refusals come from phrase lists of their own, not the
suite's, so the suite that runs after training still measures replies the model never saw.

Only training prompts get anchors (the validation split and its suite stay as they were); the data
report counts them per kind. `refusal` is wrong on harmlessness data, where declining a harmful
request is the good reply: leave it out there (the default recipe does).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

from common.data.preferences import PreferenceGroup
from common.rewards.sanity import build_suite
from reward_model.sanity import best_reply, first_groups

# phrases of the anchors' own: none is one of the suite's DEFLECTIONS/REFUSALS
ANCHOR_DEFLECTIONS = {
    "en": ("Great question!", "Thanks for asking, that's a thoughtful one.", "I appreciate your curiosity!",
           "Sorry, I'm not sure what you mean.", "I hope this helps! Let me know if you have other questions.",
           "Interesting! Have a nice day."),
    "zh": ("好问题！", "谢谢你的提问，这个问题很有意思。", "抱歉，我不太明白你的意思。", "希望对你有帮助！"),
}
ANCHOR_REFUSALS = {
    "en": ("I won't be able to help with that.", "Sorry, that's not something I can do."),
    "zh": ("对不起，这个我不能帮你。",),
}


def anchor_groups(train: Sequence[PreferenceGroup], kinds: Sequence[str], share: float,
                  seed: int) -> list[PreferenceGroup]:
    """⌊share · distinct training prompts⌉ pairs (best reply, bad reply of a kind), each on its own
    prompt drawn with `seed`; the j-th drawn prompt takes kinds[j mod len(kinds)], or the next kind
    that exists for it (a one-word reply has no `cut`)."""
    firsts = first_groups(list(train))
    count = round(share * len(firsts))
    if not kinds or count == 0 or len(firsts) < 2:
        return []
    prompts, goods = [g.prompt for g in firsts], [best_reply(g) for g in firsts]
    bad = {(it.index, it.kind): it.bad for it in build_suite(prompts, goods, ANCHOR_DEFLECTIONS, ANCHOR_REFUSALS)}
    drawn = sorted(random.Random(seed).sample(range(len(firsts)), min(count, len(firsts))))
    anchors = []
    for j, i in enumerate(drawn):
        kind = next((k for k in (kinds[(j + s) % len(kinds)] for s in range(len(kinds))) if (i, k) in bad), None)
        if kind is None:
            continue
        g = firsts[i]
        anchors.append(PreferenceGroup(
            g.prompt, [goods[i], bad[(i, kind)]], [1, 2], domain=g.domain, where=f"anchor {kind} on {g.where}",
            source=g.source, meta={"anchor": kind},
        ))
    return anchors


def counts(anchors: Sequence[PreferenceGroup]) -> dict[str, int]:
    """{kind: pairs} in the order the kinds first appear."""
    return dict(Counter(g.meta["anchor"] for g in anchors))
