"""Paper tables rebuilt from stage outputs (JSON files DVC tracks), the paper's numbers beside ours.

The report reads only those files, never the MLflow database, so a checkout plus `dvc pull` is
enough to rebuild every table byte for byte.
"""

from isdarts.report.table1 import Table1Report, build_table1, write_table1
from isdarts.report.tables import ReportError

__all__ = ["ReportError", "Table1Report", "build_table1", "write_table1"]
