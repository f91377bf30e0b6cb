"""RobustDARTS's S4: `noise` and `sep_conv_3x3` on every edge of both cell kinds. `noise` outputs standard
Gaussian noise of its output's shape, whatever the input (isdarts.spaces.darts.ops.NoiseOp), so a cell that
keeps it has learnt to rely on noise: the failure this space was built to expose."""

from isdarts.spaces.darts.space import darts_like_space

OPS = ("noise", "sep_conv_3x3")

SPACE = darts_like_space("s4", {"normal": (OPS,) * 14, "reduce": (OPS,) * 14}, module=__name__)
