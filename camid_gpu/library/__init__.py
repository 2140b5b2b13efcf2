"""The fingerprint library: every camera the lab has fingerprinted, searched at scale (``camid library``).

- :mod:`.catalogue`: the SQLite catalogue (WAL, versioned schema with migrations, the library's version hash);
- :mod:`.arrays`: content-addressed fingerprint files and the compact screening rows (float16, memory-mapped);
- :mod:`.integrity`: what every reader checks first (catalogue against its version, each row against its metadata
  and its source store's manifest kept in the library, ``--expect-version``);
- :mod:`.manage`: init, the atomic add, retire, info, verify;
- :mod:`.screen`: the screening statistic, its batched products and its thresholds (miss rate, Sidak);
- :mod:`.search`: the two-stage search run (screen, then confirm with identify's own code);
- :mod:`.link`: fingerprint against fingerprint, for pairs of library cameras that are one camera;
- :mod:`.runcheck`: a search run's ``library.jsonl`` (the cameras it compared) and ``camid verify``'s re-check.
"""
from camid_gpu.library.manage import add_stores, init_library, library_info, retire_camera, verify_library
from camid_gpu.library.search import search_library

__all__ = ["add_stores", "init_library", "library_info", "retire_camera", "search_library", "verify_library"]
