"""Every default of camid, named once: the values the command line, the algorithms' keyword defaults and
the record of a run read (where each comes from: README, "Parameters, defaults and where they come from")."""
from __future__ import annotations

# -- the residual (Binghamton NoiseExtract) -------------------------------------------------------
#: wavelet and decomposition levels of NoiseExtract
DEFAULT_WAVELET = "db4"
DEFAULT_LEVELS = 4
#: window sizes of Mihcak's local variance estimate (Binghamton's WaveNoise)
MIHCAK_WINDOWS: tuple[int, ...] = (3, 5, 7, 9)
#: rgb -> gray weights of Binghamton's rgb2gray1 (MATLAB's rgb2gray)
GRAY_WEIGHTS: tuple[float, float, float] = (0.2989, 0.5870, 0.1140)
#: denoiser noise std of reference residuals (Binghamton getFingerprint), 0..255 scale
SIGMA_FINGERPRINT = 3.0
#: the same for disputed images in the PCE method (Binghamton example)
SIGMA_QUERY = 2.0
#: the same for both sides of the Mahalanobis method (the PeerJ CS paper)
SIGMA_MAHALANOBIS = 2.0

# -- PCE -------------------------------------------------------------------------------------------
#: same-camera threshold on the PCE used by the field
PCE_THRESHOLD = 60.0
#: side of the square around the peak left out of the correlation energy
PEAK_NEIGHBOURHOOD = 11
#: PCE peak search range (rows, columns): no shift
SHIFT_RANGE = (0, 0)
#: fingerprints correlated per step by the PCE and the scale/crop search (device memory grows with it; the
#: engine's chunk sizing counts this many fingerprint planes per image)
PCE_CAMERA_CHUNK = 4
#: crop search inside larger sensors for an image whose size is the native sensor frame of some compared camera
#: (upright or turned): off, such an image is compared at full frame with the cameras of its size only; an image
#: of no compared sensor's size is always crop-searched (``--search-crops`` turns the search on for every image)
SEARCH_CROPS = False
#: the Mahalanobis method's generic twin: disputed images per chunk are chosen so that chunk x cameras x
#: compared samples stays below this many elements
MAHALANOBIS_CHUNK_ELEMENTS = 1 << 22

# -- images and references -------------------------------------------------------------------------
#: centre clipping (rows, columns) of the PeerJ CS paper: the Mahalanobis method's geometry
CLIP = (1000, 1000)
#: geometry of the PCE method: the full sensor frame (None), as Binghamton's getFingerprint and PCE
PCE_CLIP: tuple[int, int] | None = None
#: geometry of the Mahalanobis method: the paper's centre clipping
MAHALANOBIS_CLIP: tuple[int, int] | None = CLIP
#: reference images per camera (the paper's R)
REFERENCES = 15
#: usable references per camera under which ``camid fingerprint`` warns (every usable one is used by default):
#: a fingerprint's estimation noise falls roughly as 1/N, so fewer flats give lower PCE to genuine matches
RECOMMENDED_REFERENCES = REFERENCES

# -- usable references and fingerprints (checked when a fingerprint is built and when it is loaded) ----
#: a reference clip is "saturated" when more than this fraction of its samples sit at the top code value
#: (a blown-out flat: clipped pixels carry no PRNU)
REF_MAX_SATURATED_FRACTION = 0.5
#: a reference clip is "too dark" when its mean is under this (0..255 scale; lens cap on: the PRNU is
#: multiplicative, so a dark image carries almost none)
REF_MIN_MEAN = 5.0
#: a disputed image's region compared by the Mahalanobis method has "insufficient content" when more than this
#: fraction of its samples sit at the top code value (its per-pixel votes would run on blown-out pixels)
MAX_SATURATED_FRACTION = 0.5
#: a reference or disputed clip is "constant" when its sample std is under this (0..255 scale)
MIN_CONTENT_STD = 0.5
#: references of another camera (``camid fingerprint``): each reference's residual is compared, on its central
#: square of this side (decimated evidence, kept on disk: memory does not grow with the references), with every
#: camera's mean of those squares ...
REF_CHECK_SIDE = 128
#: ... and refused when it correlates with another camera's at least this many times more than with its own
#: folder's (leave-one-out) ...
REF_CROSS_RATIO = 3.0
#: ... and that correlation is significant: at least this many standard deviations of an NCC of independent noise
#: over the square (1 / side)
REF_CROSS_SIGMAS = 6.0
#: fewest usable references a fingerprint may be built from (fewer is refused at build and at load)
MIN_REFERENCES = 2
#: a stored fingerprint array whose std is under this is degenerate (all zero or constant)
MIN_FINGERPRINT_STD = 1e-8

# -- input limits (checked before a file is read and before pixels are allocated) --------------------
#: largest input file read, in bytes (a 3 GB sparse ".jpg" is refused before it is read)
MAX_FILE_BYTES = 1 << 30
#: largest decoded image, in bytes of samples (rows x columns x channels x bytes per sample), declared by
#: the header and checked before decoding; 1 GiB holds a 100-megapixel 16-bit RGB image
MAX_DECODED_BYTES = 1 << 30
#: largest decoded image in pixels, whatever the sample size (a second guard against decompression bombs)
MAX_PIXELS = 250_000_000

# -- blind clustering (camid cluster) --------------------------------------------------------------
#: region compared between images: "auto" (whole frames when the run fits the two budgets below, else the largest
#: centred square that does: camid_gpu/cluster/region.py), "full", or N: the largest centred square up to N x N
CLUSTER_REGION = "auto"
#: the smallest square side "auto" chooses (the default before "auto"; what it compares when nothing fits)
CLUSTER_REGION_FLOOR = 1024
#: "auto": residual rows kept in RUN/residuals/ at most (float32; also at most half the free disk space there)
CLUSTER_AUTO_STORE_BYTES = 64 << 30
#: "auto": Gram multiply-adds at most (rows^2 / 2 x pixels per group; 1e13 took ~23 min on a shared 2-core CPU
#: at 7.4 GMAC/s float32, far less on a GPU)
CLUSTER_AUTO_GRAM_MACS = 1e13
#: smallest region side accepted
CLUSTER_MIN_REGION = 32
#: probability of any false link in the whole set (both stages: the image pairs and the fingerprint refinement)
CLUSTER_PFA = 1e-6
#: the pair stage's share of --pfa; the fingerprint refinement (merges and attachments) gets the rest. The split is
#: of the expected number of false links ``-ln(1 - pfa)`` (Sidak's composition): the pair stage spends
#: ``pfa_pairs = 1 - (1 - pfa)^share``, the refinement ``pfa_refine = 1 - (1 - pfa)^(1 - share)``, so that
#: ``1 - (1 - pfa_pairs)(1 - pfa_refine) = pfa`` exactly (``pfa_pairs + pfa_refine`` exceeds ``pfa`` only by their
#: product, 2.5e-13 at the default). Fixed before any comparison is made: see camid_gpu/cluster/threshold.py
CLUSTER_PFA_PAIRS_SHARE = 0.5
#: residual RMS (0..255 gray levels) below which an image carries no sensor noise to compare (a constant or
#: fully saturated frame: its residual is rounding error, identical between such frames, so it would link them)
CLUSTER_MIN_RESIDUAL_RMS = 1e-2
#: fingerprint merge/attach rounds at most
CLUSTER_MAX_ROUNDS = 20
#: same-scene guard (camid_gpu/cluster/scene.py): two images whose band-passed block-mean content has an NCC of at least
#: this are a same-scene pair (their residuals share the scene the denoiser leaves in them): never linked
CLUSTER_SAME_SCENE_NCC = 0.5
#: ... and only when both have at least this much band-passed content (RMS, gray levels 0..255): a flat field has
#: none, and what is left there (averaged PRNU, fixed pattern) is shared by a camera's flats
CLUSTER_SCENE_MIN_CONTRAST = 1.0
#: two images whose residuals (the compared region) correlate at NCC of at least this are one photo (another
#: container with a few samples changed): never linked, as a same-scene pair, and listed apart. Measured on 160x192
#: synthetic flats (bench/measure_duplicate_ncc.py): distinct flats of one camera 0.07-0.12; one flat re-encoded as
#: JPEG at quality 95 0.79 and at 85 0.60 (not caught: a re-encode changes the residual that much), 1 % of its
#: samples changed by one level 0.99 (caught); the same pixels
#: in another container are caught exactly by their pixel hash (pipeline.copies)
CLUSTER_DUPLICATE_NCC = 0.9
#: Gram product precisions ("auto": float16 on CUDA, float32 elsewhere)
GRAM_PRECISIONS = ("auto", "float32", "float16")

# -- console answers (camid identify) --------------------------------------------------------------
#: a best PCE at or above this fraction of the threshold, with no decision, is printed as a "near miss"
NEAR_MISS_FRACTION = 0.5
#: relative difference of aspect ratios (rows/columns) under which a smaller image is "the sensor's frame
#: resized or cropped" for the --search-scales hint
HINT_ASPECT_TOLERANCE = 0.02

# -- evidence strength (camid calibrate; --calibration) -------------------------------------------
#: fewest same-source (image, own camera) pairs of one image kind a calibration is fitted from: floors, not a
#: guarantee (the ELUB bounds say how large an LR the data support); fewer is refused, naming the shortfall
CALIBRATION_MIN_SAME_SOURCE = 20
#: fewest different-source pairs of one image kind (of the population chosen for the alternative hypothesis)
CALIBRATION_MIN_DIFFERENT_SOURCE = 100
#: fewest cameras with images of one kind: the validation holds each camera out in turn
CALIBRATION_MIN_CAMERAS = 4
#: score-to-LR models (lir): logistic regression (default; monotone in the score), kernel density, isotonic (PAV)
CALIBRATORS = ("logistic", "kde", "isotonic")
#: the population of the alternative hypothesis: every other camera, or only other cameras of the same model
DIFFERENT_SOURCE_CHOICES = ("all", "same-model")
#: camid calibrate --like: the simulated images' long side at most this (the seized sizes scaled down, aspect
#: kept: the simulation is CPU-bound), cameras simulated (3 models x twins), references and disputed images each
CALIBRATION_LIKE_MAX_SIDE = 320
CALIBRATION_LIKE_CAMERAS = 6
CALIBRATION_LIKE_REFS = 8
CALIBRATION_LIKE_DISPUTED = 6
#: longest casework text (--case, --examiner, --note, an --exhibit label), characters
CASEWORK_MAX_CHARS = 2000

# -- the fingerprint library (camid library) ------------------------------------------------------
#: catalogue schema version this camid writes (older catalogues are migrated on open, newer ones refused)
LIBRARY_SCHEMA_VERSION = 2
#: screening miss rate: a genuine pair whose full-frame PCE reaches the decision threshold is shortlisted with
#: probability at least 1 - this, under the signal model below
LIBRARY_SCREEN_MISS = 1e-3
#: signal model of the screen: its z (zero-shift NCC * sqrt(n) on the compact form) is ``retained *
#: sqrt(PCE) + e`` with ``e ~ N(0, LIBRARY_SCREEN_SPREAD^2)``: one null standard deviation covers what separates
#: the two statistics (float16 rounding, the PCE's energy estimate, residuals that are not quite white)
LIBRARY_SCREEN_SPREAD = 1.0
#: fraction of the full-frame z the default compact form keeps (full frame in float16: rounding only, about
#: 3e-4 of the z; kept as 0.999 to cover it)
LIBRARY_SCREEN_RETAINED = 0.999
#: false-alarm probability of any false link in ``camid library link`` (fingerprint against fingerprint)
LIBRARY_LINK_PFA = 1e-6
#: most query images per chunk of a library search: each pass over the library's rows serves a whole chunk
LIBRARY_CHUNK_LIMIT = 32

# -- choices ---------------------------------------------------------------------------------------
METHOD_CHOICES = ("pce", "mahalanobis", "both")
ROTATION_CHOICES = ("auto", "all", "none")
NATURAL_MODES = ("aligned", "paper")
BACKEND_CHOICES = ("auto", "numpy", "torch")
#: working precision, the one rule in two places. Batch runs (every command, --precision): float32, about 3.5x
#: faster on the NumPy backend at full frame, residuals within ~1e-4 (0..255) of float64, the same decisions
#: (tests/backend/test_numpy_fast.py); float64 is the reference, selectable for reproducibility.
PRECISION = "float32"
#: the Python API (a backend named by string, e.g. ``extract_residual(x, backend="numpy")``): the reference
#: float64 on NumPy (where it costs only time), float32 on torch (GPUs); ``get_backend(..., dtype=)`` overrides
API_PRECISION = {"numpy": "float64", "torch": "float32"}
PRECISION_CHOICES = ("float32", "float64")
KIND_CHOICES = ("auto", "flat", "natural")
#: JPEG decoder: "auto" = the GPU (nvJPEG via torchvision) when the backend is torch on CUDA and torchvision
#: is installed, else the CPU; "gpu" insists (an error without CUDA); files the GPU cannot take use the CPU
DECODE_CHOICES = ("auto", "cpu", "gpu")
#: the default of each choice above, for the command line and the dataclasses below alike
METHOD = "pce"  # the decision; the Mahalanobis method on request (--method both), in demo and evaluate --paper
ROTATIONS = "auto"
NATURAL_MODE = "aligned"
BACKEND = "auto"
KIND = "auto"
DECODE = "auto"
GRAM_PRECISION = "auto"
#: decoding processes (--workers)
WORKERS = 1


#: sanity bounds of the numeric parameters (checked at the edge: nothing outside reaches the maths)
MAX_SIGMA = 255.0
MAX_PCE_THRESHOLD = 1e9
#: largest magnitude of a float pixel the API accepts (floats are taken on the 0..255 scale; beyond the 16-bit
#: range they are no pixel values: 1e300 overflowed the denoiser's squares and came back as an all-zero residual)
MAX_FLOAT_PIXEL = 65535.0

#: smallest memory budget accepted (--max-host-memory, --max-gpu-memory), bytes
MIN_MEMORY_BUDGET = 1 << 20
#: host memory budget of every command run without --max-host-memory, bytes (at most half of the machine's RAM): a
#: shared workstation's share, not the machine. Chunks, batches and decode workers are sized from it; a run's peak
#: is about the process's base (~0.3 GB) plus one chunk of the largest frame (README "Memory": measured per MP)
HOST_MEMORY = 2 << 30
#: the casework report's fingerprint quality (each reference's PCE against the fingerprint of the others) is
#: computed on this centre clipping of the references (or the run's smaller PCE clip): the same comparison
#: on every camera at a bounded cost (three residuals of 1 MP per reference), whatever the sensor size
QUALITY_CLIP = (1024, 1024)
#: host bytes per pixel of the report's recomputed diagnostics (one frame at a time: decoded pixels, a float32
#: residual and its correlation plane), measured: a 10 MP frame peaked at ~1.05 GB above the report's base; a
#: frame needing more than the host budget gets no correlation surface (said in the report)
DIAGNOSTICS_BYTES_PER_PIXEL = 110
#: images per step of a fingerprint's ML accumulation (camera and cluster fingerprints), at most: the count
#: before budgets applied (a step holds that many whole frames; a smaller budget gives smaller steps)
FINGERPRINT_BATCH = 4
#: disputed images per Dask task of ``identify --dask`` (``--chunk`` when fixed); a task scores them in chunks
#: within the budget
DASK_IMAGES_PER_TASK = 8
#: workers of ``--dask local`` (no count given) without dask-cuda, at most (the usable CPUs and the host budget
#: cap it, as they cap ``--dask local:N`` and ``--workers``)
DASK_LOCAL_WORKERS = 4
#: deepest wavelet decomposition accepted (Binghamton uses 4); each level also needs the image to be at least
#: 2**levels samples on its short side (the mirror padding grows to a multiple of 2**levels: levels=20 on a
#: small image asked for an 8 TiB array)
MAX_LEVELS = 8

# --- video (camid_gpu.io.video, camid_gpu.prnu.video) ---------------------------------------------------
#: which frames of a video are used (--frames): "i" intra frames (only keyframes decoded), "all", or a count
VIDEO_FRAMES = "i"
#: quality weight of a frame by picture type in the pooled estimate (times 1/var of its residual); the issue's
#: measurement on H.264 CRF 23: I-frames PCE ~700, P 6-11, B ~0, so a P-frame is worth about a tenth of an I
VIDEO_FRAME_WEIGHTS = {"I": 1.0, "SI": 1.0, "P": 0.1, "SP": 0.1, "S": 0.1, "B": 0.02, "BI": 0.02}
#: the weight of a picture type not listed above (unknown)
VIDEO_OTHER_WEIGHT = 0.1
#: stabilised video: each frame's peak is searched over shifts up to this many pixels each way
VIDEO_ALIGN_RANGE = 16
#: hybrid matching (a video frame as a scaled crop of a still sensor): the scale step and the span searched
#: above the smallest scale at which the frame fits (relative)
VIDEO_HYBRID_STEP = 0.002
VIDEO_HYBRID_SPAN = 0.03
