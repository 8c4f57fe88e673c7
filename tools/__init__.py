"""Entry points that sit on top of the stages: the memory planner's CLI (`python -m tools.plan`), the dashboard
(`python -m tools.dashboard`), the default model's install (`python -m tools.default_model`)."""
