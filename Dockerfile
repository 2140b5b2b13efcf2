# camid_gpu on CUDA 12: torch (a CUDA 12.8 build) + CuPy for the fused kernels, as a non-root `camid`
# command working on /data.
#
#   docker build -t camid_gpu .
#   docker run --rm --gpus all -v "$PWD":/data camid_gpu info
#   docker run --rm --gpus all --user "$(id -u):$(id -g)" -v "$PWD":/data camid_gpu fingerprint refs -o fp
#
# The CUDA *runtime* image (not `base`) is needed: CuPy compiles camid_gpu/kernels/*.cu at run time with NVRTC,
# which it loads from the system CUDA libraries. torch's wheel brings its own CUDA libraries. The host
# needs an NVIDIA driver that supports CUDA 12.8 (R570 or later; older datacenter drivers may work
# through CUDA forward compatibility) and the NVIDIA Container Toolkit (`--gpus all`).
FROM nvidia/cuda:12.8.1-runtime-ubuntu24.04

# torch: 2.10.0 is the last release whose PyPI wheels are CUDA 12 builds (12.8); PyPI's wheels from
# 2.11 on are CUDA 13 builds, which match neither this base image nor cupy-cuda12x. For a newer torch
# pass a CUDA 12 index of PyTorch's, e.g.
#   --build-arg TORCH_VERSION=2.13.0 --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
# (check that the release has that build).
ARG TORCH_VERSION=2.10.0
ARG TORCH_INDEX_URL=https://pypi.org/simple
ARG CUPY_VERSION=13.6.0
ARG PIP_VERSION=25.3

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/camid \
    PATH=/opt/camid/bin:$PATH \
    CUPY_CACHE_DIR=/tmp/cupy-kernel-cache \
    MPLCONFIGDIR=/tmp/matplotlib

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Ubuntu 24.04's Python is 3.12 (camid needs >= 3.11). The apt packages come from the distribution's
# security-updated archive for this base image; pinning their exact Debian revisions would break the
# build at each security update without making it more reproducible than the base image tag does.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv "$VIRTUAL_ENV" \
    && pip install --no-cache-dir "pip==${PIP_VERSION}" \
    && pip install --no-cache-dir --index-url "$TORCH_INDEX_URL" "torch==${TORCH_VERSION}" \
    && pip install --no-cache-dir "cupy-cuda12x==${CUPY_VERSION}" "pytorch-wavelets==1.3.0"

# Only what the wheel needs (see .dockerignore): the package (the CUDA sources inside it), the metadata.
COPY pyproject.toml README.md /tmp/camid-src/
COPY camid_gpu /tmp/camid-src/camid_gpu

# torch, CuPy and pytorch-wavelets are already there at the versions above, so the extras add
# nothing else; the source tree is removed once installed (a regular, not editable, install).
# `camid info` checks that every extra imports (no GPU is visible while building: it says so).
RUN pip install --no-cache-dir "/tmp/camid-src[torch,cuda]" \
    && rm -rf /tmp/camid-src \
    && camid --version \
    && camid info \
    && groupadd --gid 10001 camid \
    && useradd --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin camid \
    && mkdir -p /data \
    && chown 10001:10001 /data

# numeric, so that the host can resolve it (the user `camid`, uid/gid 10001); run with
# --user "$(id -u):$(id -g)" to have the outputs on a bind mount owned by you
USER 10001:10001
WORKDIR /data
VOLUME /data
ENTRYPOINT ["camid"]
CMD ["--help"]
