"""Run safety: NaN/Inf guards, stop signals, checkpoint and argument checks."""
