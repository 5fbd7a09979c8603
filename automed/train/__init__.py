"""Training: networks built from plan.json (the training engine itself arrives with the auto-train issue)."""
