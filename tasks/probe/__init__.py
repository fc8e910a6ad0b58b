"""Procedurally generated perception and reasoning probe items."""
