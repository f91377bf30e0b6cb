"""RobustDARTS search space S2."""
