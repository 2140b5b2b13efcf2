"""Stage 3, the two-degree-of-freedom Mahalanobis classifier (PeerJ Computer Science, 2024).

- :mod:`.classifier`: traces, pixel selection, covariance and pair statistics, votes, results, comparison.
- :mod:`.kernel`: the fused CUDA launcher of the pair statistics (``kernels/mahalanobis.cu``).
"""
from camid_gpu.mahalanobis import kernel as _kernel  # noqa: F401  registers the fused launcher
