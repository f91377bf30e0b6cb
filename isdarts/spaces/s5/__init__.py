"""RobustDARTS search space S5."""
