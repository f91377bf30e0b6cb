"""RobustDARTS's S3: `none`, `skip_connect` and `sep_conv_3x3` on every edge of both cell kinds (`none` is never
derived into a cell, as on the DARTS space)."""

from isdarts.spaces.darts.space import darts_like_space

OPS = ("none", "skip_connect", "sep_conv_3x3")

SPACE = darts_like_space("s3", {"normal": (OPS,) * 14, "reduce": (OPS,) * 14}, module=__name__)
