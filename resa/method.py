"""RESA's registry entry. `resa` sits above `mitigation` in the import graph, so RESA registers as a plugin: setup.cfg
declares `resa = resa.method:RESA` under the `vlm_trust.methods` entry-point group, and `mitigation.registry` loads
this module when it is first queried. Importing it costs no trainer import (the config and recipe stay lazy).
"""

from mitigation.registry import MethodEntry

RESA = MethodEntry(
    id="resa",
    axis="training",
    # METHODS.md section 5: the recipe aims at the safety-utility balance (refusing harmful requests without
    # over-refusing benign ones, keeping general utility); its trade-off table measures exactly these.
    targets=("safety", "utility"),
    config="resa.config:ResaConfig",
    kind="recipe",
    target="resa.recipe:run_resa",
    paper="MultiTrust-X (arXiv 2508.15370); recipe after STAIR (arXiv 2502.02384)",
)
