"""Sensory / poll: SNMP polling as a publisher (interface, BGP and reachability state).

Parts, in flow order:

* ``scheduler`` — ``PollReceiver``: one schedule per device (interval with
  jitter), a global concurrency cap, timeouts and retries; one poll = GET
  sysUpTime + GETBULK walks of IF-MIB (and BGP4-MIB) → ``DeviceSnapshot`` →
  ``diff`` → publish → ``state.save``; failures feed ``FailureTracker``;
* ``snmp`` — ``SnmpClient``, an asynchronous SNMP v2c and v3 (USM) client
  (GET, GETBULK walks) multiplexing many requests to many agents over one UDP
  socket; ``PollTarget`` names one agent;
* ``diff`` — two snapshots of a device → ``SensoryEvent``s (link, BGP, reboot;
  ``FailureTracker`` for device down/up), with the trap receiver's targets and
  payload keys so a poll-seen and a trap-seen fact are one;
* ``shard`` — which receiver polls which target: rendezvous hashing over the
  live members of a JetStream key-value bucket (``JetStreamMembership``,
  ``poll.sharding``), so several receivers never poll a device twice;
* ``state`` — ``PollState``, the last known snapshot per device, durable:
  ``SqlitePollState`` (``poll.state_path``) or ``PostgresPollState``
  (``state_postgres``; beside the outcomes with ``store.backend: postgres``).

Imports: stdlib, netcortex.contracts, netcortex.thalamus.subjects,
netcortex.errors, sibling modules (``snmp`` and ``state`` also use structlog;
``snmp`` pydantic's ``SecretStr`` and the ``sensory.trap.ber`` codec;
``state_postgres`` asyncpg, netcortex.logs and netcortex.pg; ``shard`` nats-py,
netcortex.logs/metrics/nats_errors).
"""
