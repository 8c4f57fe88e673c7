"""Stage 3: PPO against the reward model with a KL penalty: GAE with a critic, or the critic-free
GRPO, RLOO and REINFORCE++ estimators."""
