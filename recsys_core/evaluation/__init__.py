"""The shipped lists offline: the protocol's choices on validation and figures on test, metrics, baselines."""
