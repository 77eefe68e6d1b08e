"""Reflex: fast deterministic reactions to sensory events.

``registry`` (which handlers run) → ``runner`` (one task per handler) walking the
``pipeline`` (gates → handler → sinks, ordered once in ``pipeline.py``);
``handlers/`` holds the built-in handlers. Talks to the bus and the outcome
store only through ``contracts`` Protocols. May import: ``contracts``,
``errors``, ``config``, ``metrics``, ``testing``, ``thalamus.subjects``.
"""

from __future__ import annotations

from netcortex.reflex.pipeline import Pipeline, build_pipeline
from netcortex.reflex.registry import HandlerRegistry, builtin_handlers, builtin_registry
from netcortex.reflex.runner import ReflexRunner
from netcortex.reflex.sinks import BusSink, LogSink, StoreSink

__all__ = [
    "BusSink",
    "HandlerRegistry",
    "LogSink",
    "Pipeline",
    "ReflexRunner",
    "StoreSink",
    "build_pipeline",
    "builtin_handlers",
    "builtin_registry",
]
