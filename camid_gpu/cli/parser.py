"""The ``camid`` argument parser; every default comes from :mod:`camid_gpu.config`."""
from __future__ import annotations

import argparse
from typing import Any

from camid_gpu.cli.video import add_frames_option, add_synth_video_options
from camid_gpu import config as cfg
from camid_gpu._version import __version__
from camid_gpu.cli.evidence import add_calibrate_parser, add_calibration_option, add_casework_options
from camid_gpu.cli.library import add_library_parser


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors exit with ``USAGE_EXIT`` (1), not argparse's 2: code 2 means
    "``verify`` found changes" and must never be produced by a mistyped option."""

    def error(self, message: str):  # type: ignore[override]
        self.print_usage(__import__("sys").stderr)
        self.exit(USAGE_EXIT, f"{self.prog}: error: {message}\n")


#: exit code of a usage error (the same as any fatal error; distinct from verify's 2 and partial's 3)
USAGE_EXIT = 1


def _add_backend_options(p: argparse.ArgumentParser, decode: bool = False) -> None:
    g = p.add_argument_group("execution")
    if decode:
        g.add_argument("--decode", choices=cfg.DECODE_CHOICES, default=cfg.DECODE,
                       help="JPEG decoder: gpu (nvJPEG via torchvision; needs torch on CUDA), "
                            "cpu (Pillow), auto (gpu when available, default); files the GPU cannot take use the CPU")
    g.add_argument("--backend", choices=cfg.BACKEND_CHOICES, default=cfg.BACKEND,
                   help="numpy (pywt/scipy) or torch (CPU/CUDA); auto = torch on CUDA if present")
    g.add_argument("--precision", choices=cfg.PRECISION_CHOICES, default=cfg.PRECISION,
                   help=f"working precision (default {cfg.PRECISION}; float64 is the reference, slower)")
    g.add_argument("--device", default=None, help="torch device: cpu, cuda or cuda:N")
    g.add_argument("--workers", type=int, default=cfg.WORKERS, help=f"decoding processes (default {cfg.WORKERS})")
    g.add_argument("--max-host-memory", default=None, help=f"host memory budget, e.g. 8G (default {cfg.HOST_MEMORY >> 30}G, or half of RAM when "
                        f"less); chunks and decode workers are sized from it")
    g.add_argument("--max-gpu-memory", default=None, help="GPU memory budget, e.g. 20G (default: 80%% of free)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.add_argument("--include-hidden", action="store_true",
                   help="also read hidden files and search hidden folders (names starting with '.'); by default "
                        "they are listed as skipped")
    g.add_argument("--max-file-size", default=None,
                   help=f"largest input file read, e.g. 2G (default {cfg.MAX_FILE_BYTES >> 30} GiB); larger files "
                        "are per-file errors")
    g.add_argument("--max-decoded-size", default=None,
                   help=f"largest decoded image, rows x columns x channels x bytes per sample, e.g. 2G (default "
                        f"{cfg.MAX_DECODED_BYTES >> 30} GiB); checked on the header, before decoding")


def _add_dask_option(p: argparse.ArgumentParser, work: str) -> None:
    """``--dask``, the one definition every command that can run on Dask takes (``work``: what runs there)."""
    p.add_argument("--dask", default=None, metavar="SCHEDULER",
                   help=f"{work} on Dask: 'local' (one worker per GPU with dask-cuda, else per core up to 4), "
                        f"'local:N' (N worker processes) or a scheduler address tcp://HOST:8786")


def _clip_text(clip: Any) -> str:
    return "full" if clip is None else f"{clip[0]}x{clip[1]}"


def _add_param_options(p: argparse.ArgumentParser, with_refs: bool = True, from_store: bool = False,
                       scoring: bool = True) -> None:
    """``scoring``: also the options that only matter when disputed images are scored (fingerprint has none)."""
    g = p.add_argument_group("method parameters")
    g.add_argument("--method", choices=cfg.METHOD_CHOICES, default=None,
                   help="pce (default: the primary decision), mahalanobis (PeerJ CS 2024) or both (the "
                        "Mahalanobis method beside PCE, on request)")
    pce_default = "the fingerprints'" if from_store else f"{_clip_text(cfg.PCE_CLIP)}, Binghamton's whole frame"
    maha_default = "the fingerprints'" if from_store else f"{_clip_text(cfg.MAHALANOBIS_CLIP)}, the paper's clipping"
    g.add_argument("--pce-clip", default=None, metavar="N|HxW|full",
                   help=f"geometry of the PCE method: a centre clipping N or HxW (rows x columns), or 'full' "
                        f"(the whole sensor frame); default {pce_default}")
    g.add_argument("--mahalanobis-clip", default=None, metavar="N|HxW|full",
                   help=f"geometry of the Mahalanobis method; default {maha_default}")
    g.add_argument("--clip", default=None, metavar="N|HxW|full",
                   help="one geometry for both methods (--pce-clip / --mahalanobis-clip win over it)")
    if with_refs:
        g.add_argument("--refs", default="all",
                       help=f"reference images per camera, or 'all' (default: every usable one; fewer than "
                            f"{cfg.RECOMMENDED_REFERENCES} gives a warning)")
    # identify: the store fixes these, so no default here (a value given must equal the store's)
    g.add_argument("--sigma-fingerprint", type=float, default=cfg.SIGMA_FINGERPRINT if with_refs else None,
                   help=f"PCE reference denoiser sigma ({cfg.SIGMA_FINGERPRINT:g}"
                        + ("" if with_refs else "; identify: taken from the fingerprints") + ")")
    g.add_argument("--sigma-mahalanobis", type=float, default=cfg.SIGMA_MAHALANOBIS if with_refs else None,
                   help=f"Mahalanobis denoiser sigma ({cfg.SIGMA_MAHALANOBIS:g}"
                        + ("" if with_refs else "; identify: taken from the fingerprints") + ")")
    if not scoring:
        return
    g.add_argument("--sigma-query", type=float, default=cfg.SIGMA_QUERY,
                   help=f"PCE disputed-image denoiser sigma ({cfg.SIGMA_QUERY:g})")
    g.add_argument("--pce-threshold", type=float, default=cfg.PCE_THRESHOLD,
                   help=f"same camera when PCE > this ({cfg.PCE_THRESHOLD:g})")
    g.add_argument("--shift-range", default=cfg.shift_range_text(cfg.SHIFT_RANGE),
                   help="PCE peak search: 0 (no shift), N or HxW (shifts 0..N), or 'all'")
    g.add_argument("--rotations", choices=cfg.ROTATION_CHOICES, default=cfg.ROTATIONS,
                   help="auto: try 0/90/180/270 against a fingerprint whose orientation differs from the image's")
    g.add_argument("--natural-mode", choices=cfg.NATURAL_MODES, default=cfg.NATURAL_MODE,
                   help=f"Mahalanobis pixel selection for natural images (default {cfg.NATURAL_MODE})")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="camid", description="Camera identification from sensor PRNU "
                                     "(PCE, and the 2-DOF Mahalanobis classifier), on NumPy or torch/CUDA.")
    parser.add_argument("--version", action="version", version=f"camid {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    sub.add_parser("info", help="versions, backends and visible devices")
    _add_data_parsers(sub)
    _add_fingerprint_parser(sub)
    _add_identify_parser(sub)
    _add_evaluate_parser(sub)
    _add_cluster_parser(sub)
    add_library_parser(sub, _add_backend_options, _add_dask_option)
    add_calibrate_parser(sub)
    _add_tool_parsers(sub)
    return parser


def _add_data_parsers(sub: Any) -> None:
    """``synth`` and ``residual``."""
    p = sub.add_parser("synth", help="write a synthetic camera dataset (refs/, disputed/, ground_truth.json)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("outdir", help="dataset folder to write")
    p.add_argument("--cameras", type=int, default=4, help="cameras")
    p.add_argument("--per-model", type=int, default=2, help="cameras per model (twins share model artefacts)")
    p.add_argument("--refs", type=int, default=15, help="flat reference images per camera")
    p.add_argument("--flat", type=int, default=3, help="disputed flat images per camera")
    p.add_argument("--natural", type=int, default=3, help="disputed natural images per camera")
    p.add_argument("--height", type=int, default=1000, help="image rows")
    p.add_argument("--width", type=int, default=1200, help="image columns")
    p.add_argument("--quality", type=int, default=92, help="JPEG quality")
    p.add_argument("--format", choices=("jpeg", "png", "tiff"), default="jpeg", help="image file format")
    p.add_argument("--portrait", type=int, default=0, help="disputed natural images per camera stored rotated 90")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    add_synth_video_options(p)

    p = sub.add_parser("residual", help="noise residuals as float32 TIFF + one JSON line per image")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("-o", "--outdir", required=True)
    p.add_argument("--sigma", type=float, default=cfg.SIGMA_FINGERPRINT)
    p.add_argument("--levels", type=int, default=cfg.DEFAULT_LEVELS)
    p.add_argument("--wavelet", default=cfg.DEFAULT_WAVELET)
    p.add_argument("--clip", default="full", help="centre clipping N or HxW (default: full image)")
    p.add_argument("--channel", choices=("color", "green"), default="color",
                   help="color: per-channel residuals combined to gray (Binghamton); green: green channel only")
    p.add_argument("--wiener", action="store_true", help="also apply WienerInDFT")
    _add_backend_options(p)
    add_casework_options(p)


def _add_fingerprint_parser(sub: Any) -> None:
    p = sub.add_parser("fingerprint", help="build one fingerprint per camera subfolder of REFS_DIR")
    p.add_argument("refs_dir")
    p.add_argument("-o", "--outdir", required=True, help="fingerprint folder")
    p.add_argument("--overwrite", action="store_true", help="replace fingerprint files already in the folder")
    p.add_argument("--add", action="store_true",
                   help="add the cameras of REFS_DIR to the existing store in OUTDIR (same parameters; the cameras "
                        "already there are kept, checked against its manifest, and listed in the new manifest)")
    _add_param_options(p, scoring=False)
    _add_backend_options(p, decode=True)
    add_frames_option(p)
    add_casework_options(p)


def _add_identify_parser(sub: Any) -> None:
    p = sub.add_parser("identify", help="which camera took each image")
    p.add_argument("fp_dir")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("-o", "--outdir", default="camid-run",
                   help="run folder: results.jsonl (one record per image) and manifest.json (default camid-run)")
    p.add_argument("--json", default=None, help="also write all results as one JSON file")
    p.add_argument("--csv", default=None, help="also write a CSV table (one row per image and camera)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run folder's run (same parameters, fingerprints and inputs only): files done "
                        "are skipped, files that failed are retried, files changed since are flagged")
    p.add_argument("--overwrite", action="store_true", help="replace existing --json/--csv files")
    _add_adopt_option(p)
    p.add_argument("--unverified-store", action="store_true",
                   help="use a fingerprint store that has no manifest (nothing to check its files against); the run "
                        "records that it was unverified. A store whose manifest disagrees is refused regardless")
    p.add_argument("--kind", choices=cfg.KIND_CHOICES, default=cfg.KIND,
                   help="image kind for the Mahalanobis method (auto: from the name, else the content)")
    _add_dask_option(p, "identification (batches of images)")
    p.add_argument("--store", action="append", default=None, metavar="FP_DIR",
                   help="another fingerprint store searched together with FP_DIR (repeatable; camera names unique "
                        "across the stores)")
    p.add_argument("--search-scales", default=None, metavar="LO:HI:STEP",
                   help="search downscaled and/or cropped images over these scales (e.g. 0.5:1.0:0.01) against "
                        "full-frame PCE fingerprints (the default geometry); PCE only")
    p.add_argument("--search-crops", action="store_true", default=cfg.SEARCH_CROPS,
                   help="crop-search larger sensors also for an image of a compared sensor's size (by default such "
                        "an image is compared at full frame with the cameras of its size only)")
    _add_param_options(p, with_refs=False, from_store=True)
    _add_backend_options(p, decode=True)
    add_frames_option(p)
    add_calibration_option(p)
    add_casework_options(p)


def _add_adopt_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--adopt-unverified", action="store_true",
                   help="with --resume: keep the results of a run folder that has no manifest (a run killed before "
                        "it could write one; nothing vouches for its records), recorded in run.json, the manifest "
                        "and the report; each record is still checked against its own scores")


def _add_evaluate_parser(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="fingerprint refs/ and score disputed/ against ground-truth folders")
    p.add_argument("dataset_dir")
    p.add_argument("-o", "--outdir", default=None, help="run folder (default: DATASET_DIR/camid-eval)")
    p.add_argument("--json", default=None, help="also write the evaluation JSON here")
    p.add_argument("--resume", action="store_true", help="continue the run folder's run (see identify --resume)")
    _add_adopt_option(p)
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    p.add_argument("--paper", action="store_true",
                   help="the PeerJ CS paper's comparison: both methods (PCE and Mahalanobis) on 1000x1000 centre "
                        "clippings (a --clip/--*-clip given wins)")
    _add_param_options(p)
    _add_backend_options(p, decode=True)
    add_calibration_option(p)
    add_casework_options(p)


def _add_cluster_parser(sub: Any) -> None:
    p = sub.add_parser("cluster", help="which images share a camera, with no camera at hand (blind clustering)")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("-o", "--outdir", required=True, help="run folder (clusters.json, clusters.csv, fingerprints/, ...)")
    p.add_argument("--region", default=str(cfg.CLUSTER_REGION),
                   help="region compared: 'auto' (default: whole frames when the run fits the residual-storage and "
                        "Gram budgets, else the largest centred square that does), 'full', or N: the largest centred "
                        "square up to N x N")
    p.add_argument("--pfa", type=float, default=cfg.CLUSTER_PFA,
                   help=f"probability of any false link in the whole set, pairs and fingerprint refinement "
                        f"together (default {cfg.CLUSTER_PFA:g})")
    p.add_argument("--sigma", type=float, default=cfg.SIGMA_FINGERPRINT,
                   help=f"residual denoiser sigma ({cfg.SIGMA_FINGERPRINT:g}, as for fingerprints)")
    p.add_argument("--gram-precision", choices=cfg.GRAM_PRECISIONS, default=cfg.GRAM_PRECISION,
                   help="Gram products: auto = float16 on CUDA (measured negligible), float32 elsewhere")
    p.add_argument("--resume", action="store_true",
                   help="continue RUN: skip files done, add new inputs, multiply only the pairs with new images")
    _add_adopt_option(p)
    _add_dask_option(p, "the Gram tiles")
    _add_backend_options(p)
    add_frames_option(p)  # a video is one row: its frames pooled
    add_casework_options(p)


def _add_tool_parsers(sub: Any) -> None:
    """``verify``, ``report``, ``demo`` and ``selftest``."""
    p = sub.add_parser("verify", help="re-hash the inputs, fingerprints and outputs listed in a run manifest")
    p.add_argument("manifest", help="RUN_DIR/manifest.json (or RUN_DIR)")
    p.add_argument("--expect-sha256", default=None, metavar="HEX",
                   help="the manifest's own SHA-256 as kept elsewhere (printed by every run, in manifest.sha256)")
    p.add_argument("--library", default=None, metavar="LIB",
                   help="a library search run: where the library it searched lies now (default: its recorded path)")

    p = sub.add_parser("report", help="one self-contained HTML report of a run folder")
    p.add_argument("run_dir")
    p.add_argument("-o", "--output", default=None, help="HTML file (default RUN_DIR/report.html)")
    p.add_argument("--fingerprints", default=None, help="fingerprint folder (default: from the manifest)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing report file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--max-host-memory", default=None,
                   help=f"host memory budget of the recomputed diagnostics, e.g. 1G (default {cfg.HOST_MEMORY >> 30}G, "
                        f"or half of RAM when less); they are computed one file at a time, and a frame that needs "
                        f"more gets no correlation surface")

    p = sub.add_parser("demo", help="synthesise twin cameras, fingerprint and evaluate with both methods")
    p.add_argument("--outdir", default=None, help="where to keep the demo data (default: a temporary folder)")
    p.add_argument("--size", choices=("small", "paper"), default="small",
                   help="small: 640x768 images (about a minute); paper: 1000x1200 images; PCE on full frames, "
                        "Mahalanobis on 512x512 (small) or the paper's 1000x1000 clippings")
    p.add_argument("--seed", type=int, default=0)
    _add_backend_options(p)

    p = sub.add_parser("selftest", help="known-answer validation of every backend present (JSON + HTML record)")
    p.add_argument("-o", "--outdir", default=None,
                   help="where to write selftest.json and selftest.html (default camid-selftest-<UTC time>)")
