"""RobustDARTS's S2: `skip_connect` and `sep_conv_3x3` on every edge of both cell kinds."""

from isdarts.spaces.darts.space import darts_like_space

OPS = ("skip_connect", "sep_conv_3x3")

SPACE = darts_like_space("s2", {"normal": (OPS,) * 14, "reduce": (OPS,) * 14}, module=__name__)
