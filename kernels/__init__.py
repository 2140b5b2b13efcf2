"""CUDA C sources for camid's fused hot spots, shipped inside the wheel as ``camid_gpu.kernels``.

Each ``.cu`` file is compiled once per process by NVRTC (``cupy.RawModule``) and cached; see
``camid_gpu/cuda.py``. Every kernel has a torch twin of the same math in ``camid_gpu`` that the tests
compare against.
"""
