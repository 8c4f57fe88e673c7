"""The closed RLHF loop: rounds of policy samples → people rank them (the annotation app, the
reward model choosing what they label) → reward model → policy → held-out evaluation."""
