"""Contract checks every planner must pass (run them from your plugin's tests).

Example:
    >>> from automed.testing.contracts import check_planner_contract
    >>> from automed.plan.planner import make_plan
    >>> from automed.plan.preset import load_preset
    >>> check_planner_contract(make_plan, load_preset("default"))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable

from automed.fingerprint.schema import Fingerprint
from automed.plan.preset import Preset
from automed.plan.schema import Plan
from automed.testing.fingerprints import synthetic_fingerprint

PlannerFn = Callable[..., Plan]


def contract_fingerprints() -> list[Fingerprint]:
    """Isotropic small, anisotropic thick-slice, large CT, 2D, multi-channel cropped."""
    return [
        synthetic_fingerprint((1.0, 1.0, 1.0), (36, 50, 35)),
        synthetic_fingerprint((3.5, 0.8, 0.8), (40, 256, 256), spacing_jitter=0.2),
        synthetic_fingerprint((1.0, 0.8, 0.8), (400, 512, 512), modality="CT", n_cases=30),
        synthetic_fingerprint((1.0, 0.5, 0.5), (1, 512, 640), n_cases=50),
        synthetic_fingerprint((1.0, 1.0, 1.0), (140, 170, 140), n_channels=4, relative_size=0.5),
    ]


def check_planner_contract(
    planner: PlannerFn, preset: Preset, fingerprints: list[Fingerprint] | None = None
) -> None:
    """Raise ``AssertionError`` unless ``planner(fp, preset)`` is deterministic, round-trips through JSON, keeps the
    patch within the median shape, plans batch >= the minimum and fits the memory target, on every fingerprint."""
    for fp in fingerprints or contract_fingerprints():
        a, b = planner(fp, preset), planner(fp, preset)
        assert a.model_dump_json() == b.model_dump_json(), "planner is not deterministic"
        assert a.hash == a.compute_hash(), "plan hash does not match its content"
        again = Plan.model_validate(json.loads(json.dumps(a.model_dump(mode="json"))))
        assert again == a, "plan does not survive a JSON round-trip"
        for name, cfg in a.configurations.items():
            assert len(cfg.patch_size) == len(cfg.median_shape), name
            for p, m in zip(cfg.patch_size, cfg.median_shape, strict=True):
                assert p <= m, f"{name}: patch {cfg.patch_size} exceeds median shape {cfg.median_shape}"
            assert cfg.batch_size >= preset.batch.min_batch_size, f"{name}: batch {cfg.batch_size}"
            assert cfg.memory.estimate_gb <= cfg.memory.target_gb + 1e-9, f"{name}: {cfg.memory}"
            assert cfg.network.n_stages == len(cfg.network.strides) == len(cfg.network.kernel_sizes)
            for ax in range(len(cfg.patch_size)):
                pools = sum(1 for s in cfg.network.strides if s[ax] == 2)
                assert cfg.patch_size[ax] % 2**pools == 0, f"{name}: patch not divisible on axis {ax}"
            assert math.prod(cfg.patch_size) > 0
            assert all(cfg.reasons.values()), f"{name}: a decision has no reason"
