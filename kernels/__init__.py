"""CUDA C sources for camid's fused hot spots, shipped inside the wheel as ``camid_gpu.kernels``.

Each ``.cu`` file is compiled once per process by NVRTC (``cupy.RawModule``) and cached by
``camid_gpu/_cuda/loader.py``; the launchers live beside their algorithm (``camid_gpu/prnu/mihcak_kernel.py``,
``camid_gpu/mahalanobis/kernel.py``). Every kernel has a torch twin of the same math in ``camid_gpu`` that
the tests compare against. From a checkout without installing, the loader reads this folder directly.
"""
