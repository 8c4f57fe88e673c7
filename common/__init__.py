"""Code shared by every stage: config, models, data records, hygiene, tracking, runs."""
