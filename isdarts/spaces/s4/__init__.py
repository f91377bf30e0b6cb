"""RobustDARTS search space S4."""
