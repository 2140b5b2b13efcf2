"""The self-contained HTML report of a run folder (:mod:`.html`)."""
from camid_gpu.report.html import write_report

__all__ = ["write_report"]
