"""Paper tables rebuilt from stage outputs (JSON files DVC tracks), the paper's numbers beside ours.

The report reads those files only through ``isdarts.records``, never the MLflow database, so a checkout plus
`dvc pull` rebuilds every table byte for byte; matplotlib is imported only when figures are drawn.
"""

from isdarts.errors import ReportError
from isdarts.report.build import build_all
from isdarts.report.render import write_table
from isdarts.report.table1 import build_table1
from isdarts.report.table2 import build_table2
from isdarts.report.table3 import build_table3
from isdarts.report.table_a1 import build_table_a1
from isdarts.report.table_a2 import build_table_a2

__all__ = ["ReportError", "build_all", "build_table1", "build_table2", "build_table3", "build_table_a1",
           "build_table_a2", "write_table"]
