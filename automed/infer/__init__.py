"""Inference: sliding-window prediction, fold ensembles and export to the input's geometry."""
