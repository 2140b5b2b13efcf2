"""The generic CUDA kernel loader (NVRTC compile cache, DLPack, launch on torch's stream): :mod:`.loader`.

Launchers of the fused kernels live beside their algorithm (``prnu/mihcak_kernel.py``,
``mahalanobis/kernel.py``), each describing its kernel as a :class:`~camid_gpu._cuda.loader.FusedKernel`.
"""
