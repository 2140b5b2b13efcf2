"""Evidence strength for court: calibrated likelihood ratios beside the threshold decision.

The casework record (``--case``, ``--exhibit``, ``--examiner``, ``--note``, kept in every manifest) is
:mod:`camid_gpu.pipeline.casework`, below the manifest writer that records it.

- :mod:`.conditions`: the conditions of an image a calibration is valid for (size, JPEG quality, kind, match);
- :mod:`.pairs`: scored (image, camera) pairs with known truth, read from ``camid evaluate`` runs;
- :mod:`.fit`: ``camid calibrate``: a score-to-LR model fitted with ``lir`` (the ``evidence`` extra), its ELUB
  bounds and its validation with cameras held out;
- :mod:`.apply`: :func:`~camid_gpu.evidence.apply.apply_calibration` (``--calibration``; needs NumPy only) and the
  verbal scale.

This package is imported by the command line and the report; nothing here is imported at the package level.
"""
