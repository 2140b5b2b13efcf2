"""Every default and parameter type of camid, in one place.

What to compute is a :class:`Params` (it shapes every number in a result and is recorded with it); how to
run is a :class:`RunConfig` (backend, workers, memory; never changes a result). The command line, the
algorithms' keyword defaults and the record of a run all read their defaults from here. Units: pixel
values on the 0..255 scale, sizes in pixels as (rows, columns), memory in bytes.

Where each default comes from is listed in the README ("Parameters, defaults and where they come from").
"""
from camid_gpu.config.checks import *  # noqa: F401,F403
from camid_gpu.config.defaults import *  # noqa: F401,F403
from camid_gpu.config.params import ClusterParams, InputLimits, Params, RunConfig  # noqa: F401
