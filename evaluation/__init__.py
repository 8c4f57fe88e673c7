"""The evaluation stage: did alignment make the model better? Policies against a baseline on
held-out prompts — reward-model win-rates (raw and length-controlled) with intervals, the
per-domain mixed reward, length, EOS and KL, the signs of a hollow policy — and blind human
comparisons through the annotation app (`evaluation.human`)."""
