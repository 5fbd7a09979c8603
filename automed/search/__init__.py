"""Configuration search: search-space YAML (schema, validation, sampling, plan-aware resolution), grids, and the
engines (Ray Tune, Optuna) that run an objective they are handed."""
