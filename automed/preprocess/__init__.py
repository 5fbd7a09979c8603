"""Preprocessing: crop to non-zero, normalize, resample; the cache under WORKDIR/preprocessed/."""
