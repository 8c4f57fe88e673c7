"""The reward-model stage's options: one dataclass, from `configs/reward_model/*.yaml` + CLI."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from common.config import param
from common.data.preferences import PreferenceSource
from common.training import TrainingOptions


@dataclass
class RMStageConfig(TrainingOptions):
    """Reward model: a scalar head on a causal-LM backbone, trained on preferences."""

    output_root: str = param("runs/reward_model", help="parent folder of run folders")
    learning_rate: float = param(1e-4, help="peak learning rate")

    # --- data
    data: list[PreferenceSource] = param([], help="preference sources with weights")
    val_fraction: float = param(0.1, help="share of prompts held out for validation (split by prompt)")
    val_split: Literal["shuffle", "hash"] = param(
        "shuffle", help="shuffle = a seeded draw of exactly val_fraction of the prompts; hash = each prompt by the hash "
        "of (seed, prompt): stable as labels are added (the closed loop's rounds validate on the same prompts)"
    )
    max_train_groups: int | None = param(None, help="cap on training groups after mixing (None = all)")
    max_length: int = param(512, help="tokens per prompt+response; longer ones lose their beginning")
    anchors: list[Literal["empty", "deflection", "refusal", "other_prompt", "echo", "cut"]] = param(
        [], help="anchor pairs added to the training split: a prompt's best reply preferred over a bad reply of these "
        "sanity-suite kinds, taken in turn, with phrases the suite does not use (reward_model/anchors.py); [] = none. "
        "Leave `refusal` out on harmlessness data"
    )
    anchor_share: float = param(0.25, help="anchor pairs per distinct training prompt (each on its own prompt, ≤ 1)")

    # --- model and loss
    loss: Literal["bradley_terry", "plackett_luce"] = param(
        "bradley_terry", help="pairwise Bradley–Terry, or listwise Plackett–Luce over each whole ranking"
    )
    margin: Literal["none", "rank_gap", "score", "column"] = param(
        "none",
        help="Bradley–Terry margin: rank_gap = scale·(gap−1), score = scale·(score difference), "
        "column = the row's 'margin' value",
    )
    margin_scale: float = param(1.0, help="multiplier of the margin")
    pair_weighting: Literal["pair", "group"] = param(
        "pair",
        help="Bradley–Terry averaging: pair = every ordered pair counts once (a 4-response ranking weighs 6 pairs); "
        "group = each ranking's pairs averaged first (InstructGPT). Equal on pairs-only data such as HH",
    )
    freeze_layers: int = param(0, help="full fine-tuning: freeze the embeddings and this many lowest layers")
    head_init: Literal["normal", "zero"] = param(
        "normal", help="score head: small random or zero weights (not when `model` is a reward model: a warm start "
        "keeps its head)")
    heads: Literal["single", "odin"] = param(
        "single", help="single = one scalar head; odin = a quality head and a length head on the backbone (ODIN, Chen "
        "et al. 2024): their sum is trained on the preferences, the length head to correlate with response length, the "
        "quality head not to; the saved model scores with the quality head (docs/reward_model.md)")
    odin_length_weight: float = param(
        1.0, help="odin: weight λ_L of the length-correlation penalty |ρ(r_Q, L)| − ρ(r_L, L) (1.0 as in the authors' "
        "released training script)")
    odin_orthogonal_weight: float = param(
        1.0, help="odin: weight λ_O of the heads' orthogonality penalty |cos(w_Q, w_L)| (1.0 as in the authors' script)")

    # --- ensembles and checks
    ensemble: int = param(
        1, help="train this many reward models, each on a bootstrap resample of the training groups (drawn with "
        "replacement, its own seed): <run>/member-<i>/model each, and <run>/model an ensemble folder naming them, "
        "which PPO, BCQ, the evaluation and the loop take as reward_model (docs/reward_model.md)")
    sanity_prompts: int = param(
        100, help="validation prompts the sanity suite runs on after training (the best reply against an empty one, a "
        "deflection, a refusal, another prompt's reply, the prompt echoed, the reply cut short: "
        "common/rewards/sanity.py), saved as model/sanity.json; 0 = off")

    def __post_init__(self):
        super().__post_init__()
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.max_length < 8:
            raise ValueError(f"max_length must be ≥ 8, got {self.max_length}")
        if self.loss == "plackett_luce" and self.margin != "none":
            raise ValueError("margin applies to the bradley_terry loss only")
        if not 0 <= self.anchor_share <= 1:
            raise ValueError(f"anchor_share must be in [0, 1], got {self.anchor_share}")
        if len(set(self.anchors)) != len(self.anchors):
            raise ValueError(f"anchors names a kind twice: {self.anchors}")
        if self.ensemble < 1 or self.sanity_prompts < 0:
            raise ValueError(f"ensemble must be ≥ 1 and sanity_prompts ≥ 0, got {self.ensemble} and {self.sanity_prompts}")
        if self.heads == "odin" and self.head_init == "zero":
            raise ValueError("heads: odin needs head_init: normal — two zero heads start equal and constant, where the "
                             "length correlation and the heads' angle are undefined (configs/reward_model/odin.yaml)")
        if self.odin_length_weight < 0 or self.odin_orthogonal_weight < 0:
            raise ValueError("odin_length_weight and odin_orthogonal_weight must be ≥ 0")
        if self.early_stopping_patience is not None and self.val_fraction == 0:
            raise ValueError("early stopping needs a validation split: set val_fraction > 0")
