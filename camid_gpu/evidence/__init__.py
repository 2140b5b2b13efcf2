"""Evidence strength for court: calibrated likelihood ratios beside the threshold decision.

The casework record (``--case``, ``--exhibit``, ``--examiner``, ``--note``, kept in every manifest) is
:mod:`camid_gpu.pipeline.casework`, below the manifest writer that records it.

- :mod:`.score`: the calibrated score (the search-corrected false-alarm probability: one meaning under every
  search) and each pair's search condition (geometry, clip, positions and rotations searched);
- :mod:`.conditions`: the conditions of an image and a pair a calibration model is valid for (size, JPEG
  quality, kind, search, clip);
- :mod:`.pairs`: scored (image, camera) pairs with known truth, read from ``camid evaluate`` runs;
- :mod:`.fit`: ``camid calibrate``: a score-to-LR model per image kind and search fitted with ``lir`` (the
  ``evidence`` extra), its ELUB bounds and its validation with cameras held out;
- :mod:`.model`: the stored models (numbers): evaluated, made non-decreasing, checked when a calibration loads;
- :mod:`.apply`: :func:`~camid_gpu.evidence.apply.apply_calibration` (``--calibration``; needs NumPy only) and the
  verbal scale.

``camid calibrate --references`` and ``--like`` run evaluate runs and the simulator, so they live in
:mod:`camid_gpu.cli.calibration_data`. This package is imported by the command line and the report; nothing here
is imported at the package level.
"""
