"""NatsEventBus behaviour only JetStream has: dedup, durable resume, restarts, error mapping.

The shared behaviour is in ``tests/contracts/test_bus.py``; these run against the
session ``nats_server`` (or a private one when the test restarts it).
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import AsyncIterator

import nats
import nats.errors
import nats.js.errors
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from structlog.testing import capture_logs

from netcortex.config import BusConfig
from netcortex.errors import BusError, BusUnavailable, InvalidSubject, PublishTimeout
from netcortex.metrics import Registry
from netcortex.thalamus.nats import NatsEventBus, _ack_numbers, nats_errors
from tests.conftest import BusFactory
from tests.servers import NatsServer, free_port

pytestmark = pytest.mark.nats

RECEIPT = 10.0
SUBJECT = "sensory.snmp.trap.link_down.r1.Gi1"


def _nats_exception_classes() -> list[type[BaseException]]:
    classes: list[type[BaseException]] = []
    for module in (nats.errors, nats.js.errors):
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__ == module.__name__:
                classes.append(obj)
    return sorted(set(classes), key=lambda c: c.__qualname__)


def _instance(cls: type[BaseException]) -> BaseException:
    try:
        return cls()
    except TypeError:
        return cls.__new__(cls)


class TestErrorMapping:
    @pytest.mark.parametrize("cls", _nats_exception_classes(), ids=lambda c: c.__qualname__)
    def test_every_nats_exception_becomes_a_bus_error(self, cls: type[BaseException]) -> None:
        """Every nats-py exception class raised inside nats_errors() leaves as a BusError
        with the original as its cause."""
        original = _instance(cls)
        with pytest.raises(BusError) as info, nats_errors("op"):
            raise original
        assert info.value.__cause__ is original

    @pytest.mark.parametrize(
        ("exc", "expected"),
        [
            (nats.errors.TimeoutError(), PublishTimeout),
            (nats.js.errors.FetchTimeoutError(), PublishTimeout),
            (TimeoutError(), PublishTimeout),
            (nats.js.errors.TooManyStalledMsgsError(), PublishTimeout),
            (nats.errors.NoRespondersError(), BusUnavailable),
            (nats.js.errors.NoStreamResponseError(), BusUnavailable),
            (nats.js.errors.ServiceUnavailableError(), BusUnavailable),
            (nats.errors.ConnectionClosedError(), BusUnavailable),
            (nats.errors.ConnectionReconnectingError(), BusUnavailable),
            (nats.errors.NoServersError(), BusUnavailable),
            (nats.errors.UnexpectedEOF(), BusUnavailable),
            (ConnectionRefusedError(), BusUnavailable),
            (nats.errors.BadSubjectError(), InvalidSubject),
            (nats.errors.MaxPayloadError(), BusError),
            (nats.js.errors.NotFoundError(), BusError),
        ],
        ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else v.__name__,
    )
    def test_specific_mappings_for_publish(self, exc: BaseException, expected: type) -> None:
        """Timeouts become PublishTimeout on publish, lost connections BusUnavailable,
        bad subjects InvalidSubject, API refusals BusError."""
        with pytest.raises(BusError) as info, nats_errors("publish", timeout=PublishTimeout):
            raise exc
        assert type(info.value) is expected

    def test_timeouts_outside_publish_are_unavailability(self) -> None:
        """A timeout on connect or an API call is BusUnavailable, not PublishTimeout."""
        with pytest.raises(BusUnavailable), nats_errors("connect"):
            raise nats.errors.TimeoutError

    def test_unrelated_exceptions_and_cancellation_pass_through(self) -> None:
        """Non-nats errors are not disguised as bus errors; CancelledError passes untouched."""
        with pytest.raises(KeyError), nats_errors("op"):
            raise KeyError("x")
        with pytest.raises(asyncio.CancelledError), nats_errors("op"):
            raise asyncio.CancelledError


@pytest.fixture
async def js_client(nats_server: NatsServer) -> AsyncIterator[NatsClient]:
    """A plain nats-py client on the session server, to inspect streams and consumers."""
    nc = await nats.connect(nats_server.url)
    yield nc
    await nc.close()


class TestStreamsAndConsumers:
    async def test_start_creates_namespaced_streams(
        self, bus_factory: BusFactory, js_client: NatsClient
    ) -> None:
        """start() creates SENSORY_<ns> and REFLEX_<ns> on <ns>.sensory.> and <ns>.reflex.>
        with the configured storage, max age and duplicate window."""
        bus = await bus_factory("nats", storage="memory", stream_max_age=600, duplicate_window=30)
        ns = bus._config.namespace  # type: ignore[attr-defined]
        js = js_client.jetstream()
        for root in ("sensory", "reflex"):
            info = await js.stream_info(f"{root.upper()}_{ns}")
            assert info.config.subjects == [f"{ns}.{root}.>"]
            assert str(getattr(info.config.storage, "value", info.config.storage)) == "memory"
            assert info.config.max_age == 600
            assert info.config.duplicate_window == 30

    async def test_start_is_create_or_update(
        self, bus_factory: BusFactory, js_client: NatsClient
    ) -> None:
        """A second bus with other stream settings updates the existing streams."""
        ns = "t" + uuid.uuid4().hex[:12]
        await bus_factory("nats", namespace=ns, stream_max_age=600)
        await bus_factory("nats", namespace=ns, stream_max_age=900)
        info = await js_client.jetstream().stream_info(f"SENSORY_{ns}")
        assert info.config.max_age == 900

    async def test_durable_consumer_settings(
        self, bus_factory: BusFactory, js_client: NatsClient
    ) -> None:
        """A durable subscription is a pull consumer with explicit ack, the configured
        ack_wait and max_deliver, and its patterns as filter subjects."""
        bus = await bus_factory("nats", ack_wait=7, max_deliver=3)
        ns = bus._config.namespace  # type: ignore[attr-defined]
        await bus.subscribe(
            ["sensory.*.*.link_down.>", "sensory.*.*.link_up.>"], durable="reflex-link"
        )
        info = await js_client.jetstream().consumer_info(f"SENSORY_{ns}", f"reflex-link_{ns}")
        cfg = info.config
        assert cfg.durable_name == f"reflex-link_{ns}"
        assert str(getattr(cfg.ack_policy, "value", cfg.ack_policy)) == "explicit"
        assert (cfg.ack_wait, cfg.max_deliver) == (7, 3)
        assert sorted(cfg.filter_subjects or []) == [
            f"{ns}.sensory.*.*.link_down.>",
            f"{ns}.sensory.*.*.link_up.>",
        ]

    async def test_max_ack_pending_and_replicas_are_applied_and_updated(
        self, bus_factory: BusFactory, js_client: NatsClient
    ) -> None:
        """``bus.max_ack_pending`` and ``bus.replicas`` reach the durable consumer and the
        streams; a later process with another ``max_ack_pending`` updates the consumer."""
        ns = "t" + uuid.uuid4().hex[:12]
        first = await bus_factory("nats", namespace=ns, max_ack_pending=123, replicas=1)
        await first.subscribe("sensory.>", durable="reflex-link")
        js = js_client.jetstream()
        info = await js.consumer_info(f"SENSORY_{ns}", f"reflex-link_{ns}")
        assert info.config.max_ack_pending == 123
        assert (await js.stream_info(f"SENSORY_{ns}")).config.num_replicas == 1
        second = await bus_factory("nats", namespace=ns, max_ack_pending=456)
        await second.subscribe("sensory.>", durable="reflex-link")
        info = await js.consumer_info(f"SENSORY_{ns}", f"reflex-link_{ns}")
        assert info.config.max_ack_pending == 456

    async def test_ephemeral_consumer_is_deleted_on_close(
        self, bus_factory: BusFactory, js_client: NatsClient
    ) -> None:
        """Closing a non-durable subscription removes its consumer from the server."""
        bus = await bus_factory("nats")
        ns = bus._config.namespace  # type: ignore[attr-defined]
        js = js_client.jetstream()
        sub = await bus.subscribe("sensory.>")
        assert len(await js.consumers_info(f"SENSORY_{ns}")) == 1
        await sub.close()
        assert await js.consumers_info(f"SENSORY_{ns}") == []

    @pytest.mark.parametrize("pattern", [">", "*.x.>", ["sensory.*.a", "sensory.b.*"]])
    async def test_patterns_jetstream_cannot_filter_raise(
        self, bus_factory: BusFactory, pattern: str | list[str]
    ) -> None:
        """A wildcard root, or two partially overlapping patterns, raise InvalidSubject."""
        bus = await bus_factory("nats")
        with pytest.raises(InvalidSubject):
            await bus.subscribe(pattern)


class TestJetStreamDelivery:
    async def test_same_msg_id_published_twice_is_delivered_once(
        self, bus_factory: BusFactory
    ) -> None:
        """A re-publish with the same msg_id (Nats-Msg-Id) is deduplicated by JetStream."""
        bus = await bus_factory("nats")
        sub = await bus.subscribe("sensory.>")
        await bus.publish(SUBJECT, b"first", msg_id="evt-dup")
        await bus.publish(SUBJECT, b"second", msg_id="evt-dup")
        await bus.publish(SUBJECT, b"other", msg_id="evt-other")
        got = [await sub.next(timeout=RECEIPT) for _ in range(2)]
        assert [(m.data, m.msg_id) for m in got] == [(b"first", "evt-dup"), (b"other", "evt-other")]

    async def test_durable_resumes_where_it_left_off(self, bus_factory: BusFactory) -> None:
        """Messages published while no member of a durable group is open are delivered
        to the next subscription with that name (also from a new bus instance)."""
        bus = await bus_factory("nats")
        ns = bus._config.namespace  # type: ignore[attr-defined]
        sub = await bus.subscribe("sensory.>", durable="resume")
        await bus.publish(SUBJECT, b"1")
        msg = await sub.next(timeout=RECEIPT)
        await msg.ack()
        await sub.close()
        await bus.publish(SUBJECT, b"2")
        await bus.publish(SUBJECT, b"3")
        await bus.close()

        again = await bus_factory("nats", namespace=ns)
        sub = await again.subscribe("sensory.>", durable="resume")
        got = [await sub.next(timeout=RECEIPT) for _ in range(2)]
        assert [m.data for m in got] == [b"2", b"3"]

    async def test_message_over_max_payload_with_headers_is_refused_and_bus_survives(
        self, bus_factory: BusFactory
    ) -> None:
        """A message that fits max_payload alone but not with its Nats-Msg-Id header is a
        BusError before it is sent (the server would drop the connection for good), and
        the bus keeps working."""
        bus = await bus_factory("nats")
        limit = bus._client().max_payload  # type: ignore[attr-defined]
        sub = await bus.subscribe("sensory.>")
        with pytest.raises(BusError, match="max_payload"):
            await bus.publish(SUBJECT, b"x" * (limit - 8), msg_id="evt-big")
        await bus.publish(SUBJECT, b"small", msg_id="evt-small")
        assert (await sub.next(timeout=RECEIPT)).data == b"small"
        assert bus.connected

    async def test_concurrent_publishes_pipeline_within_max_inflight(
        self, bus_factory: BusFactory
    ) -> None:
        """With max_inflight=2, 50 concurrent publishes all land; waiting for a slot is
        counted as back-pressure."""
        metrics = Registry()
        bus = await bus_factory("nats", max_inflight=2, metrics=metrics)
        sub = await bus.subscribe("sensory.>")
        await asyncio.gather(*(bus.publish(SUBJECT, b"%d" % i) for i in range(50)))
        got = {(await sub.next(timeout=RECEIPT)).data for _ in range(50)}
        assert got == {b"%d" % i for i in range(50)}
        counter = metrics.get("netcortex_bus_backpressure_total")
        assert counter is not None
        assert counter.total() > 0  # type: ignore[union-attr]


class TestConnection:
    async def test_start_gives_up_on_unreachable_server(self) -> None:
        """start() against a port nobody listens on raises BusUnavailable within its budget."""
        bus = NatsEventBus(
            BusConfig(
                backend="nats", nats_url=f"nats://127.0.0.1:{free_port()}", publish_timeout=0.5
            )
        )
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(BusUnavailable):
            await bus.start()
        assert loop.time() - started < 3.0
        await bus.close()

    async def test_credentials_in_the_url_never_reach_logs_or_errors(
        self, bus_factory: BusFactory, nats_server: NatsServer
    ) -> None:
        """The user-info of ``bus.nats_url`` is redacted in connection log lines and in
        the BusUnavailable message of a failed connect."""
        with capture_logs() as logs:
            url = nats_server.url.replace("nats://", "nats://alice:s3cret@")
            await bus_factory("nats", nats_url=url)
            down = NatsEventBus(
                BusConfig(
                    backend="nats",
                    nats_url=f"nats://alice:s3cret@127.0.0.1:{free_port()}",
                    publish_timeout=0.5,
                )
            )
            with pytest.raises(BusUnavailable) as info:
                await down.start()
            await down.close()
        assert "s3cret" not in str(info.value)
        assert "s3cret" not in repr(logs)
        assert any(e["event"] == "bus_connected" for e in logs)

    async def test_survives_server_restart(self, bus_factory: BusFactory) -> None:
        """After nats-server restarts (same port, same store) the bus reconnects, logs it,
        and publishing durable and plain subscriptions carry on."""
        server = NatsServer()
        await asyncio.to_thread(server.start)
        try:
            with capture_logs() as logs:
                bus = await bus_factory("nats", nats_url=server.url)
                sub = await bus.subscribe("sensory.>", durable="survivor")
                plain = await bus.subscribe("sensory.>")
                await bus.publish(SUBJECT, b"before")
                for s in (sub, plain):
                    msg = await s.next(timeout=RECEIPT)
                    await msg.ack()

                await asyncio.to_thread(server.restart)
                async with asyncio.timeout(RECEIPT):
                    while True:  # publishes fail (not confirmed) until the client is back
                        try:
                            await bus.publish(SUBJECT, b"after", msg_id="after-1")
                            break
                        except (BusUnavailable, PublishTimeout):
                            await asyncio.sleep(0.05)
                for s in (sub, plain):
                    msg = await s.next(timeout=RECEIPT)
                    await msg.ack()
                    assert msg.data == b"after"
            events = [e["event"] for e in logs]
            assert "bus_disconnected" in events
            assert "bus_reconnected" in events
        finally:
            await bus.close()
            await asyncio.to_thread(server.cleanup)

    async def test_reconnect_errors_are_counted_and_logged_once(
        self, bus_factory: BusFactory
    ) -> None:
        """While the server is away the client reports an error per reconnect attempt
        (every 0.5 s): each is counted, one ``bus_error`` line is logged per 10 s."""
        server = NatsServer()
        await asyncio.to_thread(server.start)
        metrics = Registry()
        try:
            with capture_logs() as logs:
                bus = await bus_factory("nats", nats_url=server.url, metrics=metrics)
                await asyncio.to_thread(server.stop)
                async with asyncio.timeout(RECEIPT):  # polls the counter the client bumps
                    while True:
                        if 'event="error"} 3' in metrics.render():
                            break
                        await asyncio.sleep(0.05)
            assert [e["event"] for e in logs].count("bus_error") == 1
        finally:
            await bus.close()
            await asyncio.to_thread(server.cleanup)

    async def test_memory_storage_restart_loses_nothing_published_after(
        self, bus_factory: BusFactory
    ) -> None:
        """With ``storage: memory`` a server restart empties the streams; the consumers
        the bus re-creates start at the new stream's beginning, not at the sequence
        they had reached in the old one, so events published after the restart arrive."""
        server = NatsServer()
        await asyncio.to_thread(server.start)
        try:
            bus = await bus_factory("nats", nats_url=server.url, storage="memory")
            sub = await bus.subscribe("sensory.>", durable="amnesiac")
            plain = await bus.subscribe("sensory.>")
            for i in range(3):  # the old stream reaches sequence 3
                await bus.publish(SUBJECT, f"before-{i}".encode())
            for s in (sub, plain):
                for _ in range(3):
                    await (await s.next(timeout=RECEIPT)).ack()

            await asyncio.to_thread(server.restart)
            async with asyncio.timeout(RECEIPT):
                while True:  # not confirmed until the client is back and the stream re-made
                    try:
                        await bus.publish(SUBJECT, b"after", msg_id="after-1")
                        break
                    except (BusUnavailable, PublishTimeout):
                        await asyncio.sleep(0.05)
            for s in (sub, plain):
                msg = await s.next(timeout=RECEIPT)
                await msg.ack()
                assert msg.data == b"after"
        finally:
            await bus.close()
            await asyncio.to_thread(server.cleanup)


class TestPublishAndDeliveryHotPaths:
    def test_ack_numbers_read_both_reply_subject_forms(self) -> None:
        """The delivery count and stream sequence are read from the plain and the
        domain form of a JetStream reply subject, as nats-py's own parser reads them."""
        plain = "$JS.ACK.SENSORY_x.reflex-a_x.3.42.40.1700000000000000000.7"
        domain = "$JS.ACK._.acchash.SENSORY_x.reflex-a_x.3.42.40.1700000000000000000.7.rnd"
        for reply in (plain, domain):
            msg = Msg(None, subject="x", reply=reply)  # type: ignore[arg-type]
            assert _ack_numbers(msg) == (3, 42)
            meta = msg.metadata
            assert _ack_numbers(msg) == (meta.num_delivered, meta.sequence.stream)

    async def test_jetstream_refusal_is_a_bus_error(
        self, bus_factory: BusFactory, js_client: NatsClient
    ) -> None:
        """A publish JetStream answers with an error (here: larger than the stream's
        max_msg_size) raises BusError, neither a timeout nor unavailability."""
        bus = await bus_factory("nats")
        ns = bus._config.namespace  # type: ignore[attr-defined]
        js = js_client.jetstream()
        cfg = (await js.stream_info(f"SENSORY_{ns}")).config
        cfg.max_msg_size = 16
        await js.update_stream(cfg)
        with pytest.raises(BusError) as info:
            await bus.publish(SUBJECT, b"x" * 100)
        assert not isinstance(info.value, (PublishTimeout, BusUnavailable))
        await bus.publish(SUBJECT, b"small")  # the bus carries on

    async def test_publish_without_an_ack_times_out_and_counts(
        self, bus_factory: BusFactory
    ) -> None:
        """With the server gone, a publish raises PublishTimeout after publish_timeout,
        counts it, and leaves no pending ack behind."""
        server = NatsServer()
        await asyncio.to_thread(server.start)
        metrics = Registry()
        try:
            # publish_timeout also bounds the connect at start: 0.5 s was too short for
            # a loaded CI machine to open the connection (seen once); 1.5 s is not.
            bus = await bus_factory(
                "nats", nats_url=server.url, publish_timeout=1.5, metrics=metrics
            )
            await bus.publish(SUBJECT, b"before")
            await asyncio.to_thread(server.stop)
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(PublishTimeout):
                await bus.publish(SUBJECT, b"lost")
            assert 1.4 < loop.time() - started < 6.0
            counter = metrics.get("netcortex_bus_publish_timeouts_total")
            assert counter is not None
            assert counter.total() == 1  # type: ignore[union-attr]
            assert bus._acks == {}  # type: ignore[attr-defined]
        finally:  # the bus itself is closed by bus_factory
            await asyncio.to_thread(server.cleanup)
