"""Whole-slide images: reading with OpenSlide (pixel size, levels), the tissue mask, and the patch miner that turns
slides into 2D cases the data layer already reads (PNG patches and a CSV)."""
