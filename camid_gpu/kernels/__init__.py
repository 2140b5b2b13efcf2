"""CUDA C sources of camid's fused hot spots (package data: ``mihcak_shrink.cu``, ``mahalanobis.cu``) and
``host_emulation.h``, which compiles them as host C++ for the tests.

Each ``.cu`` file is compiled once per process and device by NVRTC (``cupy.RawModule``) and cached by
:mod:`camid_gpu._cuda.loader`; the launchers live beside their algorithm (:mod:`camid_gpu.prnu.mihcak_kernel`,
:mod:`camid_gpu.mahalanobis.kernel`). Every kernel has a twin of the same math written with the backend
primitives, which the tests and the per-device self-check compare it with.
"""
