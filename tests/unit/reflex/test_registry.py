"""Unit tests for reflex.registry: the explicit, per-instance handler registry."""

from __future__ import annotations

from typing import ClassVar

import pytest

from netcortex.contracts.events import SensoryEvent
from netcortex.contracts.reflex import ReflexHandler, ReflexOutcome
from netcortex.errors import DuplicateHandlerError, RegistryError
from netcortex.reflex.handlers import LinkDownHandler
from netcortex.reflex.registry import HandlerRegistry, builtin_handlers, builtin_registry
from netcortex.thalamus.subjects import matches


class _Handler:
    """A minimal valid handler whose attributes tests can vary."""

    def __init__(
        self,
        hid: str = "probe",
        patterns: tuple[str, ...] = ("sensory.>",),
        dedup_window: float = 0.0,
    ) -> None:
        self.id = hid
        self.patterns = patterns
        self.dedup_window = dedup_window

    async def handle(self, event: SensoryEvent) -> ReflexOutcome | None:
        return None


class _SyncHandle:
    id = "sync"
    patterns = ("sensory.>",)
    dedup_window = 0.0

    def handle(self, event: SensoryEvent) -> None:
        return None


class TestHandlerRegistry:
    def test_registers_in_order_and_gets_by_id(self) -> None:
        """all_handlers returns handlers in registration order and get_handler finds each by id."""
        a, b, c = _Handler("c-first"), _Handler("a_second"), _Handler("b3")
        reg = HandlerRegistry()
        for h in (a, b, c):
            reg.register_handler(h)
        assert reg.all_handlers() == (a, b, c)
        assert reg.get_handler("a_second") is b
        assert len(reg) == 3

    def test_same_instance_twice_is_a_noop(self) -> None:
        """Registering the very same instance again changes nothing and raises nothing."""
        h = _Handler()
        reg = HandlerRegistry([h])
        reg.register_handler(h)
        assert reg.all_handlers() == (h,)

    def test_duplicate_id_from_another_instance_raises(self) -> None:
        """A different handler with an already-registered id raises DuplicateHandlerError."""
        reg = HandlerRegistry([_Handler("dup")])
        with pytest.raises(DuplicateHandlerError, match="'dup'"):
            reg.register_handler(_Handler("dup"))
        assert len(reg) == 1

    def test_duplicate_is_a_registry_error(self) -> None:
        """DuplicateHandlerError belongs to the RegistryError subtree."""
        assert issubclass(DuplicateHandlerError, RegistryError)

    @pytest.mark.parametrize("bad", [object(), "link_down", 42, None])
    def test_non_handler_raises_type_error(self, bad: object) -> None:
        """An object that is not a ReflexHandler is rejected with a TypeError naming what lacks."""
        with pytest.raises(TypeError, match="not a ReflexHandler: missing"):
            HandlerRegistry().register_handler(bad)  # type: ignore[arg-type]

    def test_handler_class_instead_of_instance_raises(self) -> None:
        """Passing the handler class rather than an instance is a TypeError that says so."""
        with pytest.raises(TypeError, match=r"instance.*LinkDownHandler\(\)"):
            HandlerRegistry().register_handler(LinkDownHandler)  # type: ignore[arg-type]

    def test_sync_handle_raises_type_error(self) -> None:
        """A handler whose handle is not ``async def`` is rejected with a TypeError."""
        with pytest.raises(TypeError, match="async def"):
            HandlerRegistry().register_handler(_SyncHandle())  # type: ignore[arg-type]

    @pytest.mark.parametrize("hid", ["", "Link", "link.down", "link down", "a*", "a>b", "é"])
    def test_id_must_be_a_plain_token(self, hid: str) -> None:
        """An id outside [a-z0-9_-]+ is rejected with a RegistryError."""
        with pytest.raises(RegistryError, match=r"plain token"):
            HandlerRegistry().register_handler(_Handler(hid))

    @pytest.mark.parametrize(
        "patterns", [("sensory.>.x",), ("sensory..x",), ("sen*ory.>",), ("a b",), ()]
    )
    def test_invalid_patterns_raise(self, patterns: tuple[str, ...]) -> None:
        """Invalid or missing subject patterns are rejected with a RegistryError."""
        with pytest.raises(RegistryError, match="pattern"):
            HandlerRegistry().register_handler(_Handler(patterns=patterns))

    def test_bare_string_patterns_raise(self) -> None:
        """A bare string instead of a tuple of patterns is rejected with a RegistryError."""
        with pytest.raises(RegistryError, match="non-empty tuple"):
            HandlerRegistry().register_handler(_Handler(patterns="sensory.>"))  # type: ignore[arg-type]

    @pytest.mark.parametrize("window", [-1.0, float("nan"), float("inf"), "60", True])
    def test_bad_dedup_window_raises(self, window: object) -> None:
        """dedup_window must be a finite, non-negative number of seconds."""
        with pytest.raises(RegistryError, match="dedup_window"):
            HandlerRegistry().register_handler(_Handler(dedup_window=window))  # type: ignore[arg-type]

    def test_get_unknown_returns_none(self) -> None:
        """get_handler answers None for an unknown id instead of raising."""
        assert HandlerRegistry().get_handler("nope") is None

    def test_clear_registry_forgets_everything(self) -> None:
        """clear_registry empties the registry, after which the same id can be registered anew."""
        reg = HandlerRegistry([_Handler("x")])
        reg.clear_registry()
        assert reg.all_handlers() == ()
        reg.register_handler(_Handler("x"))
        assert len(reg) == 1

    def test_registries_do_not_share_state(self) -> None:
        """Two registries are independent: what one holds the other does not see."""
        one, two = HandlerRegistry(), HandlerRegistry()
        one.register_handler(_Handler("only-in-one"))
        assert two.get_handler("only-in-one") is None
        assert two.all_handlers() == ()


class TestBuiltinRegistry:
    EXPECTED: ClassVar[dict[str, str]] = {
        "link_down": "sensory.snmp.trap.link_down.r1.Gi1/0/3",
        "link_up": "sensory.snmp.trap.link_up.r1.Gi1/0/3",
        "bgp_drop": "sensory.snmp.trap.bgp_backward_transition.r1.192%2E0%2E2%2E2",
        "bgp_established": "sensory.snmp.poll.bgp_established.r1.192%2E0%2E2%2E2",
        "device_reboot": "sensory.snmp.trap.device_reboot.r1",
        "security_webhook": "sensory.meraki.webhook.security.mx-west",
        "device_down": "sensory.meraki.webhook.device_down.mr-west",
        "device_up": "sensory.meraki.webhook.device_up.mr-west",
        "config_change": "sensory.meraki.webhook.config_change.Branch%20West",
    }

    def test_all_builtins_registered(self) -> None:
        """builtin_registry holds every built-in handler, each a valid ReflexHandler."""
        reg = builtin_registry()
        assert [h.id for h in reg.all_handlers()] == list(self.EXPECTED)
        assert all(isinstance(h, ReflexHandler) for h in reg.all_handlers())

    def test_each_builtin_matches_its_canonical_subject(self) -> None:
        """Each built-in's patterns match its canonical subject and no other built-in's."""
        reg = builtin_registry()
        for hid, subject in self.EXPECTED.items():
            matching = [
                h.id for h in reg.all_handlers() if any(matches(p, subject) for p in h.patterns)
            ]
            assert matching == [hid], subject

    def test_link_down_covers_every_modality(self) -> None:
        """link_down's pattern catches a link down whatever saw it (trap, poll, Meraki API)."""
        handler = builtin_registry().get_handler("link_down")
        assert handler is not None
        for subject in (
            "sensory.snmp.trap.link_down.r1.Gi1",
            "sensory.snmp.poll.link_down.r1.Gi1",
            "sensory.meraki.api.link_down.ms-west.port3",
        ):
            assert any(matches(p, subject) for p in handler.patterns)

    def test_disabled_leaves_handlers_out(self) -> None:
        """Ids in ``disabled`` are left out; the others keep their order."""
        reg = builtin_registry(disabled=["link_up", "device_reboot"])
        ids = [h.id for h in reg.all_handlers()]
        assert ids == [
            "link_down",
            "bgp_drop",
            "bgp_established",
            "security_webhook",
            "device_down",
            "device_up",
            "config_change",
        ]

    def test_disabled_bare_string_is_one_id(self) -> None:
        """A bare string in ``disabled`` names one handler, not a set of characters."""
        reg = builtin_registry(disabled="link_up")
        assert reg.get_handler("link_up") is None
        assert len(reg) == len(self.EXPECTED) - 1

    def test_unknown_disabled_id_raises_listing_known_ids(self) -> None:
        """An unknown id in ``disabled`` is a RegistryError that lists the built-in ids."""
        with pytest.raises(RegistryError, match=r"'link_dwn'.*link_down, link_up"):
            builtin_registry(disabled=["link_dwn"])

    def test_each_call_builds_fresh_instances(self) -> None:
        """builtin_registry/builtin_handlers return new instances every call (no shared state)."""
        assert builtin_registry().all_handlers()[0] is not builtin_registry().all_handlers()[0]
        assert builtin_handlers()[0] is not builtin_handlers()[0]
