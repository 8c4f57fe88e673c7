"""The reward curve of a PPO run, drawn from its metrics file into `<run>/reward_curve.png`; with a
gold reward model, a middle panel of the proxy and gold scores (Gao et al.'s picture)."""

from __future__ import annotations

from pathlib import Path

from common.tracking import read_metrics


def plot_reward_curve(run_dir: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(run_dir)
    steps = [r["step"] for r in rows]
    gold = any("gold/score" in r for r in rows)
    fig, axes = plt.subplots(3 if gold else 2, 1, figsize=(7, 8.5 if gold else 6), sharex=True)
    top, bottom = axes[0], axes[-1]
    if gold:
        middle = axes[1]
        middle.plot(steps, [r.get("proxy/score", r["objective/scores"]) for r in rows], marker=".", label="proxy")
        middle.plot(steps, [r["gold/score"] for r in rows], marker=".", color="goldenrod", label="gold (held out)")
        middle.axvline(rows[-1]["gold/best_step"], color="grey", ls="--", lw=1, label="best by gold")
        middle.set_ylabel("normalised score")
        middle.legend(loc="upper left")
        middle.grid(alpha=0.3)
    top.plot(steps, [r["objective/scores"] for r in rows], marker=".", label="mixed reward (score)")
    top.plot(steps, [r["objective/rlhf_reward"] for r in rows], marker=".", label="score − β·KL")
    top.set_ylabel("reward")
    if any("reward/all/constraints" in r for r in rows):  # the rules' verdict, unnormalised: what a person checks
        twin = top.twinx()
        twin.plot(steps, [r.get("reward/all/constraints") for r in rows], color="tab:green", marker=".",
                  label="constraints followed (share)")
        twin.set_ylabel("share of constraints followed")
        twin.legend(loc="lower right")
    top.legend(loc="upper left")
    top.grid(alpha=0.3)
    if any("objective/kl" in r for r in rows):
        bottom.plot(steps, [r.get("objective/kl") for r in rows], color="tab:red", marker=".")
    else:  # a metrics file from a run that logged no KL
        bottom.text(0.5, 0.5, "no KL logged", ha="center", transform=bottom.transAxes)
    bottom.set_ylabel("KL to reference (per response)")
    bottom.set_xlabel("PPO step")
    bottom.grid(alpha=0.3)
    fig.suptitle(f"PPO — {Path(run_dir).name}")
    fig.tight_layout()
    out = Path(run_dir) / "reward_curve.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
