"""Entry points that sit on top of the stages (`python -m tools.<name>`; no stage imports them): the
memory planner's CLI (`plan`), the dashboard (`dashboard`), the default model's install
(`default_model`), and the instruction-following prompt generator (`constraint_prompts`)."""
