"""The pipeline's steps, one module per DVC stage; the stage scripts and the `isdarts` CLI both call them.

Each step resolves its inputs and outputs from the project layout (`layout`), runs the library code, tracks
it in MLflow (`tracked`) and writes its outputs atomically, so a failed or killed run leaves nothing for DVC.
"""
