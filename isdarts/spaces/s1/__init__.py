"""RobustDARTS search space S1."""
