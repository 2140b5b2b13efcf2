"""config: one home for every default; Params round-trips through its dict form; the CLI reads its defaults."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from camid_gpu import config
from camid_gpu.cli.options import params_of as _params
from camid_gpu.cli.parser import build_parser
from camid_gpu.config import Params


@pytest.mark.parametrize("params", [
    Params(),
    Params(clip=None, refs=None, shift_range=None, search_scales=(0.5, 1.0, 0.01), rotations="none",
           natural_mode="paper", sigma_query=1.5, pce_threshold=50.0),
    Params(clip=(512, 768), shift_range=(4, 8)),
])
def test_params_round_trip_through_json(params):
    back = Params.from_dict(json.loads(json.dumps(params.to_dict())))
    assert back == params
    assert back.to_dict() == params.to_dict()


@pytest.mark.parametrize("command", [["fingerprint", "refs", "-o", "fp"], ["evaluate", "data"]])
def test_cli_defaults_are_the_config_defaults(command):
    assert _params(build_parser().parse_args(command)) == Params()


def test_identify_defaults_leave_clip_to_the_fingerprints():
    args = build_parser().parse_args(["identify", "fp", "img.jpg"])
    assert args.clip is None and args.method is None  # resolved from the fingerprints' own parameters
    assert _params(args) == Params(refs=None)


@pytest.mark.parametrize("text, expected", [("all", None), ("3", (3, 3)), ("2x5", (2, 5))])
def test_parse_shift_range(text, expected):
    assert config.parse_shift_range(text) == expected


def test_parse_scales_and_refs():
    assert config.parse_scales("0.5:1.0:0.01") == (0.5, 1.0, 0.01) and config.parse_scales(None) is None
    with pytest.raises(ValueError, match="LO:HI:STEP"):
        config.parse_scales("0.5-1.0")
    assert config.parse_refs("all") is None and config.parse_refs("7") == 7


def test_geometry_per_method():
    p = Params()
    assert p.pce_clip is None and p.mahalanobis_clip == (1000, 1000)  # Binghamton's full frame, the paper's clip
    assert p.clip_of("pce") is None and p.clip_of("mahalanobis") == (1000, 1000)
    both = Params(clip=(128, 128))  # one geometry for both methods, as --clip
    assert both.pce_clip == both.mahalanobis_clip == (128, 128)
    assert Params.from_dict(both.to_dict()) == both and "clip" not in both.to_dict()
    old = Params.from_dict({"clip": [1000, 1000], "shift_range": [0, 0]})  # a record written before issue 10
    assert old.pce_clip == old.mahalanobis_clip == (1000, 1000)
    assert Params(pce_clip=[32, 48]).pce_clip == (32, 48)
    for bad in ((8, 8), (True, 20), "full"):
        with pytest.raises(ValueError, match="pce_clip must be None"):
            Params(pce_clip=bad)
    with pytest.raises(ValueError, match="method must be"):
        p.clip_of("both")


def test_clip_options_per_method_win_over_clip():
    parse = lambda *a: _params(build_parser().parse_args(["evaluate", "DATA", *a]))  # noqa: E731
    assert (parse().pce_clip, parse().mahalanobis_clip) == (None, (1000, 1000))
    p = parse("--clip", "512", "--pce-clip", "full")
    assert p.pce_clip is None and p.mahalanobis_clip == (512, 512)
    p = parse("--mahalanobis-clip", "768x1024")
    assert p.pce_clip is None and p.mahalanobis_clip == (768, 1024)
    assert parse("--clip", "full").mahalanobis_clip is None


def test_one_finite_number_check():
    for ok in (1, 2.5, np.float32(2.0), np.int64(3)):
        assert config.is_finite_number(ok)
    for bad in (True, np.bool_(True), math.nan, math.inf, -math.inf, None, "1"):
        assert not config.is_finite_number(bad)


def test_numpy_scalars_are_accepted_and_recorded_as_plain_numbers():
    """The parameter checks once refused a NumPy scalar that the search accepted; now one check accepts it
    and the record holds a plain number (JSON-ready)."""
    p = Params(sigma_query=np.float32(2.5), pce_threshold=np.float64(50.0), levels=np.int64(3))
    assert p.to_dict()["sigma_query"] == 2.5 and type(p.sigma_query) is float and type(p.levels) is int
    json.dumps(p.to_dict())
    assert type(config.ClusterParams(sigma=np.float32(3.0)).sigma) is float


def test_shift_range_text_is_the_inverse_of_its_parser():
    """The command line's --shift-range defaults (identify, library search, fingerprint's scoring defaults) are
    written from config.SHIFT_RANGE by this one function and read back by parse_shift_range."""
    for pair in (None, (0, 0), (5, 5), (2, 3)):
        assert config.parse_shift_range(config.shift_range_text(pair)) == pair
    assert config.shift_range_text(config.SHIFT_RANGE) == "0"


def test_every_default_lives_in_config_not_in_a_method():
    """Issue 23 item 14: the Mahalanobis generic twin's chunk size was a default kept in
    mahalanobis/constants.py; it is named once in config/defaults.py and the method reads it from there."""
    import inspect

    from camid_gpu.config import defaults
    from camid_gpu.mahalanobis import compare, constants, statistics

    assert defaults.MAHALANOBIS_CHUNK_ELEMENTS == config.MAHALANOBIS_CHUNK_ELEMENTS == 1 << 22
    assert not hasattr(constants, "DEFAULT_CHUNK_ELEMENTS")
    for function in (compare.compare_traces, statistics.pair_statistics):
        default = inspect.signature(function).parameters["chunk_elements"].default
        assert default == config.MAHALANOBIS_CHUNK_ELEMENTS


def test_one_whole_number_check_names_the_argument():
    """Issue 23 item 13: counts of the API and the command line go through one check that names them."""
    assert config.check_whole_number("batch_size", np.int64(3)) == 3
    for bad in (0, 2.5, True, "2", None):
        with pytest.raises(ValueError, match=r"batch_size must be a whole number >= 1"):
            config.check_whole_number("batch_size", bad)
    with pytest.raises(ValueError, match=r"workers \(--workers\) must be a whole number"):
        config.RunConfig(workers=2.5)
    config.check_levels(np.int64(3))
