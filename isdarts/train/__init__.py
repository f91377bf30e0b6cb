"""Training loops shared by all methods: epochs, checkpoints, devices."""
