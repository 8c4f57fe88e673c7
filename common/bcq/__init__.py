"""A trained BCQ policy as other stages use it: the networks (`model`), the batch constraint
(`constraint`), constrained decoding (`decode`) and the saved folder (`saving`). The BCQ stage
(`bcq_offline/`) trains it; the evaluation stage decodes it."""
