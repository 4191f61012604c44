"""The providers, by the name a storyboard uses for them."""

from __future__ import annotations

import importlib
from functools import cache

from hailuo_pipe.providers.base import Capabilities, JobStatus, Provider, WireRequest

__all__ = ["PROVIDER_NAMES", "Capabilities", "JobStatus", "Provider", "WireRequest", "get"]

# name -> "module:Class"; imported on first use so `validate` loads only what a spec needs.
_REGISTRY = {
    "preview": "preview:PreviewProvider",
    "wavespeed": "wavespeed:WaveSpeedProvider",
    "gmicloud": "gmicloud:GMICloudProvider",
    "minimax": "minimax:MiniMaxProvider",
    "runware": "runware:RunwareProvider",
    "apiframe": "apiframe:ApiframeProvider",
    "fal": "fal:FalProvider",
    "replicate": "replicate:ReplicateProvider",
}
PROVIDER_NAMES: tuple[str, ...] = tuple(_REGISTRY)


@cache
def get(name: str) -> type[Provider]:
    module_name, _, class_name = _REGISTRY[name].partition(":")
    module = importlib.import_module(f"{__name__}.{module_name}")
    cls: type[Provider] = getattr(module, class_name)
    return cls
