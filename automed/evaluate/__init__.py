"""Segmentation metrics and their aggregation over cases."""
