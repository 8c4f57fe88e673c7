"""Direct preference optimisation: a better policy straight from preference pairs (the annotation
app's export, HH pairs), with no reward model and no sampling — TRL's `DPOTrainer`."""
