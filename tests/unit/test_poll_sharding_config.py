"""``poll.sharding`` and its settings: what ``auto`` means, and the errors that name
the key and the file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from structlog.testing import capture_logs

from netcortex.app import Engine, poll_sharding
from netcortex.config import load_config
from netcortex.errors import ConfigError
from netcortex.sensory.poll.scheduler import PollReceiver
from netcortex.sensory.poll.shard import JetStreamMembership


def write(tmp_path: Path, data: dict[str, object]) -> Path:
    path = tmp_path / "netcortex.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


NATS = {"backend": "nats", "nats_url": "nats://127.0.0.1:4222"}


@pytest.mark.parametrize(
    ("role", "bus", "mode", "expected"),
    [
        ("receiver", NATS, "auto", True),
        ("all", NATS, "auto", False),
        ("all", {"backend": "memory"}, "auto", False),
        ("all", NATS, "on", True),
        ("receiver", NATS, "off", False),
    ],
)
def test_auto_means_receivers_on_nats(
    tmp_path: Path, role: str, bus: dict[str, str], mode: str, expected: bool
) -> None:
    """``auto`` shards only for a receiver on NATS; ``on`` and ``off`` are what they say."""
    path = write(tmp_path, {"bus": bus, "poll": {"sharding": mode}})
    config = load_config(path, environ={}, role=role)
    assert poll_sharding(config) is expected


def test_on_without_nats_names_the_key_and_the_file(tmp_path: Path) -> None:
    """``poll.sharding: on`` on the memory bus is refused when the engine is built,
    naming ``poll.sharding`` and the file."""
    path = write(tmp_path, {"poll": {"enabled": True, "sharding": "on"}})
    config = load_config(path, environ={})
    with pytest.raises(ConfigError, match=r"netcortex\.yaml: poll\.sharding: is 'on'") as info:
        Engine(config)
    assert info.value.problems == [(str(path), "poll.sharding", info.value.problems[0][2])]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("sharding", "sometimes"),
        ("membership_heartbeat_seconds", 0),
        ("membership_heartbeat_seconds", 601),
        ("membership_bucket", "a.b"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, key: str, value: object) -> None:
    """A bad sharding setting is a ``ConfigError`` naming ``poll.<key>`` and the file."""
    path = write(tmp_path, {"poll": {key: value}})
    with pytest.raises(ConfigError, match=rf"netcortex\.yaml: poll\.{key}"):
        load_config(path, environ={})


def test_receiver_on_nats_gets_a_membership(tmp_path: Path) -> None:
    """The wiring: a polling receiver on NATS is built with a membership in the
    namespaced bucket (construction only, no I/O)."""
    path = write(
        tmp_path,
        {
            "bus": {**NATS, "namespace": "lab"},
            "poll": {"enabled": True, "membership_heartbeat_seconds": 1.5},
            "trap": {"enabled": False},
            "http": {"enabled": False},
        },
    )
    engine = Engine(load_config(path, environ={}, role="receiver"))
    receiver = engine.receivers["poll"]
    assert isinstance(receiver, PollReceiver)
    membership = receiver._membership  # private on purpose: the wiring is what is tested
    assert isinstance(membership, JetStreamMembership)
    assert membership.bucket == "netcortex_members_lab"
    assert membership.ttl == 5  # 3 x 1.5 s, rounded up


@pytest.mark.parametrize(
    ("other", "key"),
    [
        ({"dedup": {"bucket": "shared_kv"}}, "dedup.bucket"),
        ({"association": {"lease_bucket": "shared_kv"}}, "association.lease_bucket"),
    ],
)
def test_membership_bucket_of_its_own(tmp_path: Path, other: dict[str, object], key: str) -> None:
    """``poll.membership_bucket`` equal to another key-value bucket is refused, naming
    ``poll.membership_bucket``, the file and the other key."""
    path = write(tmp_path, {"poll": {"membership_bucket": "shared_kv"}, **other})
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    ((origin, where, msg),) = info.value.problems
    assert (origin, where) == (str(path), "poll.membership_bucket")
    assert msg == (
        f"is 'shared_kv', the same bucket as {key}: the receivers' membership needs a "
        "JetStream key-value bucket of its own"
    )
    assert "netcortex.yaml: poll.membership_bucket: is 'shared_kv'" in str(info.value)


@pytest.mark.parametrize(("mode", "warned"), [("auto", True), ("off", False), ("on", False)])
def test_role_all_on_nats_warns_that_auto_does_not_shard(
    tmp_path: Path, mode: str, warned: bool
) -> None:
    """Role ``all`` on NATS with ``poll.sharding: auto`` (off for ``all``) warns once
    when the poller is built: several such processes would each poll every device."""
    path = write(
        tmp_path,
        {
            "bus": NATS,
            "poll": {"enabled": True, "sharding": mode},
            "trap": {"enabled": False},
            "http": {"enabled": False},
        },
    )
    config = load_config(path, environ={}, role="all")
    with capture_logs() as logs:
        Engine(config)
    found = [e for e in logs if e["event"] == "poll_shard_off_for_all"]
    assert len(found) == (1 if warned else 0)
    if warned:
        assert found[0]["log_level"] == "warning"
        assert "poll.sharding: on" in found[0]["hint"]
