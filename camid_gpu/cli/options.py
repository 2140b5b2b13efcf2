"""From parsed options to what the engine takes: :class:`~camid_gpu.config.Params` (what to compute),
:class:`~camid_gpu.config.RunConfig` (how to run), the input limits, and the manifest line every run prints.

Every value is checked here (through :mod:`camid_gpu.config`) before any work starts.
"""
from __future__ import annotations

import argparse
import os
import sys

from camid_gpu import config as cfg
from camid_gpu.cli.defaults import scoring_options
from camid_gpu.engine.context import backend_of
from camid_gpu.io.listing import printable


def params_of(args: argparse.Namespace) -> cfg.Params:
    """The parameters from the options, every value checked (finite, in range) before any work."""
    scoring = scoring_options(args)  # fingerprint has none of them: the defaults
    try:
        shift = cfg.parse_shift_range(scoring.shift_range)
    except ValueError as exc:
        raise ValueError(f"--shift-range: {exc}") from None
    refs = cfg.parse_refs(getattr(args, "refs", "all"))
    search = cfg.parse_scales(getattr(args, "search_scales", None))
    sigma_fp = cfg.SIGMA_FINGERPRINT if args.sigma_fingerprint is None else args.sigma_fingerprint
    sigma_maha = cfg.SIGMA_MAHALANOBIS if args.sigma_mahalanobis is None else args.sigma_mahalanobis
    return cfg.Params(pce_clip=clip_of(args, "pce"), mahalanobis_clip=clip_of(args, "mahalanobis"),
                      sigma_fingerprint=sigma_fp, sigma_query=scoring.sigma_query,
                      sigma_mahalanobis=sigma_maha, refs=refs, pce_threshold=scoring.pce_threshold,
                      shift_range=shift, rotations=scoring.rotations, natural_mode=scoring.natural_mode,
                      search_scales=search, search_crops=getattr(args, "search_crops", cfg.SEARCH_CROPS))


def given_of(args: argparse.Namespace) -> frozenset[str]:
    """The fingerprint-side parameters the user set explicitly (identify: they must equal the store's)."""
    return frozenset(name for name in ("sigma_fingerprint", "sigma_mahalanobis")
                     if getattr(args, name, None) is not None)


def clip_of(args: argparse.Namespace, method: str):
    """--<method>-clip, else --clip, else the method's default geometry."""
    own = getattr(args, f"{method}_clip")
    if own is not None:
        return cfg.parse_clip(own)
    if args.clip is not None:
        return cfg.parse_clip(args.clip)
    return cfg.PCE_CLIP if method == "pce" else cfg.MAHALANOBIS_CLIP


def clip_given(args: argparse.Namespace) -> bool:
    return any(v is not None for v in (args.clip, args.pce_clip, args.mahalanobis_clip))


def config_of(args: argparse.Namespace) -> cfg.RunConfig:
    config = cfg.RunConfig(backend=args.backend, device=args.device, workers=args.workers, precision=args.precision,
                           max_host_memory=_bytes("--max-host-memory", args.max_host_memory),
                           max_gpu_memory=_bytes("--max-gpu-memory", args.max_gpu_memory),
                           progress=False if args.quiet else None, dask=getattr(args, "dask", None),
                           decode=getattr(args, "decode", cfg.DECODE), limits=limits_of(args))
    _cap_workers(config, inputs_of(args))
    try:
        backend_of(config)  # a device that is not there (cuda:7, banana) fails here, before any work
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"--backend {args.backend} --device {args.device}: {exc}") from None
    return config


def inputs_of(args: argparse.Namespace) -> list[str]:
    """The image files and folders a command reads (its decode workers are sized from them)."""
    found = list(getattr(args, "images", None) or [])
    return found + [getattr(args, n) for n in ("refs_dir", "dataset_dir") if isinstance(getattr(args, n, None), str)]


def _cap_workers(config: cfg.RunConfig, inputs: list[str]) -> None:
    """--workers and --dask local:N within the CPUs and the host memory budget (--workers 100000 forked until
    memory ran out; --dask local:100000 grew without output until killed), each worker sized from the inputs'
    declared dimensions, with a note when lowered."""
    from camid_gpu.engine.dask import local_address
    from camid_gpu.engine.scheduler import cap_workers

    config.workers, note = cap_workers(config.workers, config.max_host_memory, config.limits, inputs)
    if config.dask:
        config.dask, dask_note = local_address(config.dask, config)
        note = "; ".join(n for n in (note, dask_note) if n) or None
    if note:
        print(f"camid: note: {note}", file=sys.stderr)


def budget_of(args: argparse.Namespace) -> int | None:
    """``--max-host-memory`` of a command that builds no run configuration (``report``); None: the default."""
    budget = _bytes("--max-host-memory", getattr(args, "max_host_memory", None))
    if budget is not None and budget < cfg.MIN_MEMORY_BUDGET:
        raise ValueError(f"--max-host-memory must be at least {cfg.MIN_MEMORY_BUDGET} bytes; got {budget}")
    return budget


def _bytes(option: str, text: str | None) -> int | None:
    try:
        return cfg.parse_bytes(text)
    except ValueError as exc:
        raise ValueError(f"{option}: {exc}") from None


def print_manifest(path: str, digest: str) -> None:
    print(f"manifest: {printable(path)}  SHA-256 {digest} (also in manifest.sha256 beside it; keep it elsewhere and "
          f"check with: camid verify {printable(path)} --expect-sha256 {digest})")
    _warn_foreign(path)


def _warn_foreign(path: str) -> None:
    """Files of the run folder the manifest just written does not list (an evidence.json of an earlier
    --calibration left by a resume without one, a file dropped in): said now, as verify and report will."""
    from camid_gpu._shared import custody

    try:
        foreign = custody.foreign_files(custody.read_manifest(path))
    except (ValueError, OSError):
        return
    for rel in foreign:
        print(f"camid: warning: {printable(custody.foreign_sentence(rel))}; verify and report will name it: move it "
              f"out of the run folder" + (" or give --calibration again to recompute it" if
                                         os.path.basename(rel) == "evidence.json" else ""), file=sys.stderr)


def print_run_manifest(run_dir: str) -> None:
    """:func:`print_manifest` from the ``manifest.sha256`` the run wrote beside its manifest."""
    with open(os.path.join(run_dir, "manifest.sha256"), encoding="utf-8") as handle:
        print_manifest(os.path.join(run_dir, "manifest.json"), handle.read().split()[0])


def limits_of(args: argparse.Namespace) -> cfg.InputLimits:
    """--max-file-size and --max-decoded-size (default: the config's limits)."""
    given = {"max_file_bytes": getattr(args, "max_file_size", None),
             "max_decoded_bytes": getattr(args, "max_decoded_size", None)}
    values = {}
    for name, text in given.items():
        if text is None:
            continue
        option = "--max-file-size" if name == "max_file_bytes" else "--max-decoded-size"
        try:
            values[name] = cfg.parse_bytes(text)
        except (ValueError, OverflowError):
            raise ValueError(f"{option} must look like 2G, 512M or a number of bytes; got {text!r}") from None
        if values[name] is None or values[name] < 1:
            raise ValueError(f"{option} must be at least 1 byte; got {text!r}")
    return cfg.InputLimits(**values)
