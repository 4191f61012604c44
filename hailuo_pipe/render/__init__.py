"""Applying a plan: scheduling, one scene's walk, polling, downloads, the shared cache."""
