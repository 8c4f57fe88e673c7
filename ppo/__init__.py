"""Stage 3: PPO against the reward model with KL penalty and GAE (issue #5; not built yet)."""
