"""Rule-based reward components and the per-domain mixer (PPO and BCQ share them).

- accuracy:   the reward-model score, or — when a prompt has a reference answer — token F1,
              exact match or ROUGE-L against it (`accuracy.py`);
- diversity:  distinct-n among the samples drawn for one prompt, and the share of a
              response's n-grams that are not repeats within it (`diversity.py`);
- efficiency: response length against the domain's token budget (`efficiency.py`);
- constraints: the share of a prompt's instructions a reply follows ("at most 25 words", "reply in
              Chinese", …), decided by rules (`verifiers/`);
- mixing:     per-domain weights from `configs/domains/<name>.yaml` (`mixer.py`).
- verifiers:  rules that decide whether a reply follows instructions such as "at most 25
              words" or "reply in Chinese" (`verifiers/`; IFEval-style strict and loose scores).
"""
