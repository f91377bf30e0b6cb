"""RobustDARTS's S1 (Zela et al., ICLR 2020; the table of the Λ-DARTS code, sota/cnn/spaces.py): the DARTS space
with a different pair of candidate ops on every edge, the pairs RobustDARTS found most important there.
Edges in node-major order (node 0: s0, s1; node 1: s0, s1, node 0; ...)."""

from isdarts.spaces.darts.space import darts_like_space

SKIP, SEP3, DIL3, DIL5 = "skip_connect", "sep_conv_3x3", "dil_conv_3x3", "dil_conv_5x5"
MAX, AVG = "max_pool_3x3", "avg_pool_3x3"

NORMAL = (
    (SKIP, DIL3), (SKIP, DIL5),
    (SKIP, DIL5), (SKIP, SEP3), (SKIP, DIL3),
    (MAX, SKIP), (SKIP, SEP3), (SKIP, SEP3), (SKIP, DIL3),
    (SKIP, SEP3), (MAX, SKIP), (SKIP, DIL3), (DIL3, DIL5), (DIL3, DIL5),
)
REDUCE = (
    (MAX, AVG), (MAX, DIL3),
    (MAX, AVG), (MAX, AVG), (SKIP, DIL5),
    (MAX, AVG), (MAX, SEP3), (SKIP, DIL3), (SKIP, DIL5),
    (MAX, AVG), (MAX, AVG), (SKIP, DIL5), (SKIP, DIL5), (SKIP, DIL5),
)

SPACE = darts_like_space("s1", {"normal": NORMAL, "reduce": REDUCE}, module=__name__)
