"""The public surface of the reflex and episodic-memory packages is fixed by these tests."""

from __future__ import annotations

import netcortex.memory.episodic as episodic
import netcortex.reflex as reflex
import netcortex.reflex.handlers as handlers
import netcortex.reflex.protocol as protocol


def test_reflex_exports() -> None:
    """netcortex.reflex exports exactly the registry, runner, pipeline and sink names."""
    assert sorted(reflex.__all__) == [
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
    assert all(hasattr(reflex, name) for name in reflex.__all__)


def test_handler_author_surface() -> None:
    """reflex.protocol re-exports the handler-author names from contracts, nothing new."""
    assert sorted(protocol.__all__) == [
        "Gate",
        "OutcomeKind",
        "ReflexHandler",
        "ReflexOutcome",
        "SensoryEvent",
        "Severity",
        "Sink",
        "outcome_id_for",
    ]
    for name in protocol.__all__:
        assert getattr(protocol, name).__module__.startswith("netcortex.contracts")


def test_handlers_and_store_exports() -> None:
    """The handler package exports the nine built-ins; episodic memory the stores."""
    assert sorted(handlers.__all__) == [
        "BgpDropHandler",
        "BgpEstablishedHandler",
        "ConfigChangeHandler",
        "DeviceDownHandler",
        "DeviceRebootHandler",
        "DeviceUpHandler",
        "LinkDownHandler",
        "LinkUpHandler",
        "SecurityWebhookHandler",
    ]
    assert sorted(episodic.__all__) == [
        "InMemoryDedupStore",
        "JetStreamDedupStore",
        "SqliteOutcomeStore",
    ]
