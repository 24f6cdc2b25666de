"""Metal support oracle: which ops and shapes each Apple GPU family will reject, predicted on Linux.

``ggml_metal_device_supports_op`` is cut out of the checked-out tree (``extract``), compiled with
that tree's ggml headers, ggml and ``test-backend-ops`` into a probe (``probe``; CMake, cached per
tree content) and asked, per device profile (``profiles``: Apple7 … Apple10, without bfloat,
paravirtual; each prop derived by the tree's own device-init rules), about a model's exported
graph ops or about every built-in test case. ``validate`` checks the oracle against the tree's
real-device op table ``docs/ops/Metal.csv``.

For the coverage stage::

    from toolchain.oracle import predict, OracleUnavailableError
    preds = predict(ops_file, tree, cache_dir=settings.cache_dir, profiles=["apple7", "apple9", "paravirtual"])
    for p in preds.profiles:          # column p.column == "metal-predicted:<profile>"
        for op in p.ops:              # op.op, op.type, op.ne, op.op_params, op.sources, op.supported
            ...
    # preds.observed_by == "predicted-from-source", preds.commit == the tree's commit

``predict`` raises ``OracleUnavailableError`` (exit 70) with the exact reason when the function
cannot be cut out of (or the probe not compiled against) a tree: no columns for that commit.
"""

from __future__ import annotations

from ..core.git import tree_commit
from ..errors import OracleUnavailableError, OracleValidationError
from ..records import ORACLE_PREDICTIONS, ORACLE_VALIDATION, write_report
from .predict import predict
from .profiles import GPU_FAMILIES, DeviceProfile, PropValue, default_profiles
from .records import (
    OBSERVED_BY,
    STATEMENT,
    OpPrediction,
    OracleValidation,
    Predictions,
    ProfilePredictions,
    TableValidation,
)
from .run import MIN_AGREEMENT
from .tree_validation import validate_tree

__all__ = [
    "GPU_FAMILIES",
    "MIN_AGREEMENT",
    "OBSERVED_BY",
    "STATEMENT",
    "DeviceProfile",
    "OpPrediction",
    "OracleUnavailableError",
    "OracleValidation",
    "OracleValidationError",
    "Predictions",
    "ProfilePredictions",
    "PropValue",
    "TableValidation",
    "default_profiles",
    "predict",
    "tree_commit",
    "validate_tree",
    "write_report",
]

PREDICTIONS_REPORT = (ORACLE_PREDICTIONS.name, ORACLE_PREDICTIONS.kind)
VALIDATION_REPORT = (ORACLE_VALIDATION.name, ORACLE_VALIDATION.kind)
