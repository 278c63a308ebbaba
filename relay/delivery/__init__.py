"""Delivery: the queue worker and what it does with each stored job, in both directions."""
