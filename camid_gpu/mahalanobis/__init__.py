"""Method 2: the two-degree-of-freedom Mahalanobis classifier (Rojas-López et al., PeerJ CS 2024).

What the method computes
------------------------
Every image, reference or disputed, is reduced to a *trace* of two planes on the 0..255 scale:

- ``eta = ZeroMeanTotal(NoiseExtract(x, sigma=2))``, the Binghamton residual of the green channel;
- ``I0 = x - eta``, the denoised intensity;
- ``PRNU = WienerInDFT(eta, std(eta))``.

The fingerprint of camera ``j`` is the pixel-wise mean of ``I0`` and of ``PRNU`` over its ``R``
reference flat images (the authors use R = 15 centre clippings of 1000 x 1000 pixels; any R >= 1
works here). For a disputed image ``d`` and camera ``j`` let ``dif = T_d - F_j`` (P pixels x 2),
``Sigma_j = cov(dif)`` (2x2, unbiased, over the pixels used) and
``MD_j(p) = sqrt(dif_p Sigma_j^-1 dif_p^T)``. Camera ``q`` (the camera claimed) *beats* camera ``j``
when more pixels satisfy ``MD_q(p) <= MD_j(p)`` than do not (equality counts as satisfied, as in the
authors' code), and ``membership(d, q) = 100 * #{j != q : q beats j} / (C - 1)``. The image is
associated with the camera(s) of highest membership; a tie is reported as a tie (several names, like
the paper's "C01,C07"), never broken.

Arrays: traces are batch-first ``(N, 2, P)`` (component 0 = I0, 1 = PRNU, ``P = H*W`` pixels in
row-major order) or ``(N, 2, H, W)``; fingerprints ``(C, 2, P)`` or ``(C, 2, H, W)``. Everything
runs through the :class:`~camid_gpu.backend.Backend` primitives, so it is written once for NumPy
(float64) and torch (CPU or CUDA, float32 or float64). On CUDA the fused kernel
``camid_gpu/kernels/mahalanobis.cu`` (``statistics.MAHALANOBIS_KERNEL``) computes the covariances and the
pairwise counts without materialising the D x C x P distances; elsewhere the generic twin
(:func:`_pair_counts_generic`) does, in chunks of disputed images so that memory stays bounded.

Disputed images of three kinds (``MahalanobisResult.mode``)
-----------------------------------------------------------
``"flat"``
    Flat-field disputed images: the centre clipping, every pixel, compared position by position.
``"aligned"`` (natural images, the default)
    The natural image's centre clipping. For camera ``j`` only pixels whose I0 lies in the open
    interval ``(mu_j - 2 sigma_j, mu_j + 2 sigma_j)`` are kept (``mu_j, sigma_j``: mean and sample
    std of camera ``j``'s fingerprint I0 over its pixels); call that set ``S_j``. ``Sigma_j`` and
    ``MD_j`` use ``S_j`` at the same pixel positions as the fingerprint, and the pair ``(q, j)`` is
    counted over ``S_q ∩ S_j`` (so satisfied + unsatisfied = ``|S_q ∩ S_j|``).
``"paper"`` (the authors' code)
    Every selected pixel of the WHOLE natural image (not the clipping), in scan order, against the
    fingerprint's pixels in scan order, both vectors truncated to the shorter length; for the pair
    ``(q, j)`` the MD vectors are truncated to the shorter one. Scan order is row-major by default
    (``order="F"`` gives MATLAB's column-major ``x(:)``, the order of the authors' code).

Why "aligned" is the default: in "paper" mode the k-th selected pixel of the natural image is
compared with the k-th pixel of the fingerprint, and those two lie at unrelated positions on the
sensor. The per-pixel PRNU pairs are then independent noise, so whatever separates the cameras cannot
be the sensor pattern: it is how similar the *intensity* of the selected natural pixels is to the
fingerprint's flat-field intensity, i.e. a comparison of intensity histograms. "aligned" keeps each
pixel at its own sensor position, which is the only way the PRNU term can carry sensor information.

Diagnostics
-----------
PCE is camid's primary decision; this method must show what drove its vote. For every ``(d, q, j)``
the result also holds the number of pixels where ``q`` is closer-or-equal to ``j`` using the PRNU
component alone (``|dif_prnu| / std``) and using the I0 component alone (``|dif_I0| / std``), and
:meth:`MahalanobisResult.diagnostics` summarises how often each one-component vote agrees with the
full vote. On real cameras an independent check found the PRNU-only votes to be coin flips (closer
fractions near 0.5) while the intensity term drives the decision; these numbers make that visible.

Corner cases
------------
- ``C = 1``: there is no competitor, so the pairwise test is vacuous: membership is NaN (``None`` in
  JSON) and no camera is associated. Counts and covariances are still computed.
- A covariance that cannot be inverted (fewer than 3 pixels used, a zero variance, or perfectly
  correlated components) marks ``(d, j)`` invalid (``MahalanobisResult.valid``); camera ``j`` is
  then at distance +inf from every pixel of ``d``, so it loses every comparison it takes part in.

Differences from the authors' MATLAB code, all deliberate and documented here: the selection
interval is open (their code keeps ``>=``/``<=`` and also drops pixels whose I0 is exactly 0, both
of measure zero for real images); each camera's selection uses that camera's own limits (their code
selects once, with the limits of the camera assumed in that run, and compares the same vector with
every fingerprint); scan order is row-major unless ``order="F"``.

Modules: :mod:`.constants`, :mod:`.traces`, :mod:`.selection`, :mod:`.covariance`, :mod:`.statistics` (+ :mod:`.kernel`,
the fused launcher), :mod:`.results`, :mod:`.compare`; every public name is re-exported here.
"""
from camid_gpu.mahalanobis.compare import classify_images, compare_paper, compare_traces  # noqa: F401
from camid_gpu.mahalanobis.constants import (  # noqa: F401
    DETERMINANT_RTOL,
    FUSED_MAX_CAMERAS,
    MODES,
    SCAN_ORDERS,
    SELECTION_SIGMAS,
)
from camid_gpu.mahalanobis.covariance import quadratic_coefficients  # noqa: F401
from camid_gpu.mahalanobis.results import (  # noqa: F401
    MahalanobisResult,
    associate,
    membership,
    summarise_diagnostics,
    wins,
)
from camid_gpu.mahalanobis.selection import (  # noqa: F401
    intensity_limits,
    scan_fingerprints,
    scan_indices,
    select_aligned,
    select_paper,
)
from camid_gpu.mahalanobis.statistics import (  # noqa: F401
    PairStatistics,
    _pair_counts_generic,
    mahalanobis_distances,
    pair_statistics,
)
from camid_gpu.mahalanobis.traces import fingerprint, fingerprints, trace_summary, trace_vectors, traces  # noqa: F401
