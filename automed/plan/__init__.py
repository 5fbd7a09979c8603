"""Experiment planning: fingerprint + preset -> plan.json."""
