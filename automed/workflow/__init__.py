"""The only orchestration layer: prepare (verify -> fingerprint -> plan -> preprocess), fold (train + validate + log,
one path for trainings and sweep trials), train, trial, sweep, select, export, predict. Components below it never
import it; :mod:`automed.api` re-exports its entry points."""
