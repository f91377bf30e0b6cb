"""RobustDARTS search space S3."""
