"""The pipeline on a SLURM cluster: DVC's stage graph as jobs (`isdarts cluster`, README "Running on a cluster")."""
