"""S5 of the Λ-DARTS paper: the DARTS space without `none`, its 7 ops in the order of the Λ-DARTS and SDARTS code
(PRIMITIVES of sota/cnn/spaces.py), on every edge of both cell kinds."""

from isdarts.spaces.darts.space import darts_like_space

OPS = ("max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")

SPACE = darts_like_space("s5", {"normal": (OPS,) * 14, "reduce": (OPS,) * 14}, module=__name__)
