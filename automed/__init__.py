"""automed: AutoML for medical imaging (fingerprint, plan, train, search, select, export, package)."""

import os as _os

# pyarrow (loaded by MLflow's dataset logging and by Ray) defaults to jemalloc with background threads; a process
# that later starts subprocesses (pools, venvs, exported bundles) was seen crashing in vfork with them alive. The
# system allocator avoids that at no measurable cost for the few tables automed handles.
_os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

# no usage telemetry from the libraries automed runs (onnxruntime, MLflow, Ray; OpenVINO where it is imported)
from automed.runtime.telemetry import environment_off as _telemetry_off

_telemetry_off()
