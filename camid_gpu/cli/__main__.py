"""``python -m camid_gpu.cli``: the ``camid`` command."""
import sys

from camid_gpu.cli import main

sys.exit(main())
