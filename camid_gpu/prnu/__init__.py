"""Stage 2, the Binghamton PRNU method.

- :mod:`.residual`: noise residual (db4 wavelet, Mihcak shrink, ZeroMeanTotal, WienerInDFT), ``(N,H,W)`` float32.
- :mod:`.mihcak_kernel`: the fused CUDA launcher of the Mihcak shrink (``camid_gpu/kernels/mihcak_shrink.cu``).
- :mod:`.fingerprint`: the ML fingerprint ``K`` from reference images.
- :mod:`.pce`: cross-correlation, PCE, false-alarm probability ("same camera" above 60).
- :mod:`.search`: Goljan & Fridrich's scale/crop search for resized or cropped images; :mod:`.scales` its scale
  grid, :mod:`.alignment` its PCE with an energy per JPEG/CFA grid-alignment class.
- :mod:`.decision`: the PCE decision (``decide``) and the union bound over tries; every record takes it from here.
"""
