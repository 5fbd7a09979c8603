"""Dataset intake: image IO, dataset layouts, verification and splits."""
