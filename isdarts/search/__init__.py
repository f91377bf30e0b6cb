"""Search methods that drive a supernet: IS-DARTS (IIM + progressive shrinking)."""
