"""What inference needs outside automed: numpy and SimpleITK only, no torch, no automed imports.

automed itself uses these modules for preprocessing and mapping predictions back, and an export copies them verbatim
into the standalone bundle, so the bundle and automed run the same code. Keep every import inside this package
relative (``from .crop import ...``) and limited to numpy, SimpleITK and the standard library.
"""
