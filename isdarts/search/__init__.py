"""Search methods on a supernet: the loop, the methods table, IS-DARTS (IIM + progressive shrinking) and baselines."""
