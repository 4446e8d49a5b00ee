"""Search spaces, strategies and the tuning loop."""
