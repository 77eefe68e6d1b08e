"""Sensory / poll: SNMP polling as a publisher (interface, BGP and reachability state).

What is here so far:

* ``snmp`` — ``SnmpClient``, an asynchronous SNMP v2c client (GET, GETBULK
  walks) multiplexing many requests to many agents over one UDP socket, with
  per-request timeout and retries; ``PollTarget`` names one agent. SNMPv3/USM
  polling is not implemented yet.

* ``diff`` — two ``DeviceSnapshot``s of a device → ``SensoryEvent``s (link,
  BGP, reboot; ``FailureTracker`` for device down/up), with the trap
  receiver's targets and payload keys so a poll-seen and a trap-seen fact are one;
* ``state`` — ``SqlitePollState``, the last known snapshot per device, durable.

Not yet here (issue 5): the scheduler, SNMPv3 polling, Engine wiring and the
``poll.*`` config; nothing in ``netcortex run`` polls yet.

Imports: stdlib, netcortex.contracts, netcortex.thalamus.subjects,
netcortex.errors, sibling modules (``snmp`` and ``state`` also use structlog;
``snmp`` pydantic's ``SecretStr`` and the ``sensory.trap.ber`` codec).
"""
