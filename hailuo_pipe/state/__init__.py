"""The files beside a spec that remember what was rendered: the lockfile and its companions."""
