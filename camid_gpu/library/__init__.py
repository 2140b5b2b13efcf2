"""The fingerprint library: every camera the lab has fingerprinted, searched at scale (``camid library``).

- :mod:`.catalogue`: the SQLite catalogue (WAL, versioned schema with migrations, the library's version hash);
- :mod:`.arrays`: content-addressed fingerprint files and the compact screening rows (float16, memory-mapped);
- :mod:`.manage`: init, the atomic add, retire, info, verify;
- :mod:`.screen`: the screening statistic, its batched products and its thresholds (miss rate, Sidak);
- :mod:`.search`: the two-stage search run (screen, then confirm with identify's own code);
- :mod:`.link`: fingerprint against fingerprint, for pairs of library cameras that are one camera.
"""
from camid_gpu.library.manage import add_stores, init_library, library_info, retire_camera, verify_library
from camid_gpu.library.search import search_library

__all__ = ["add_stores", "init_library", "library_info", "retire_camera", "search_library", "verify_library"]
