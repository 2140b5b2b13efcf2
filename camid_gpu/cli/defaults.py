"""Which methods and scoring options a command uses when the user does not say (issue 18, item 2).

PCE is the decision; the Mahalanobis method runs only on request (``--method mahalanobis|both``), in
``camid demo`` and in ``camid evaluate --paper``, where the comparison of the two is the point.
"""
from __future__ import annotations

import argparse
from types import SimpleNamespace
from typing import Sequence

from camid_gpu import config as cfg

#: ``evaluate --paper``: the PeerJ CS paper's centre clipping, for both methods unless a clip option is given
PAPER_CLIP = "1000"


def chosen_methods(args: argparse.Namespace, in_store: Sequence[str] | None = None) -> tuple[str, ...]:
    """``--method`` as given; else both under ``evaluate --paper``; else PCE (identify: PCE when the store
    has it, else the methods the store has)."""
    paper = getattr(args, "paper", False)
    if paper:
        if args.method not in (None, "both"):
            raise ValueError(f"--paper compares both methods; it cannot be combined with --method {args.method}")
        if all(getattr(args, name, None) is None for name in ("clip", "pce_clip", "mahalanobis_clip")):
            args.clip = PAPER_CLIP
        return cfg.methods_of("both")
    if args.method is not None:
        return cfg.methods_of(args.method)
    if in_store is not None and "pce" not in in_store:
        return tuple(in_store)
    return cfg.methods_of(cfg.METHOD)


def scoring_options(args: argparse.Namespace) -> SimpleNamespace:
    """The options that score disputed images, from ``args`` or (fingerprint, which has none) the defaults."""
    defaults = cfg.Params()
    return SimpleNamespace(
        sigma_query=getattr(args, "sigma_query", defaults.sigma_query),
        pce_threshold=getattr(args, "pce_threshold", defaults.pce_threshold),
        shift_range=getattr(args, "shift_range", cfg.shift_range_text(defaults.shift_range)),
        rotations=getattr(args, "rotations", defaults.rotations),
        natural_mode=getattr(args, "natural_mode", defaults.natural_mode))
