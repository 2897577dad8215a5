"""The keys of a rung result that say how its trial ended: `Flag`, defined in trainers.shared."""

from trainers.shared import Flag

__all__ = ["Flag"]
