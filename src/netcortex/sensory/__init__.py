"""Sensory: receivers that turn raw signals into ``SensoryEvent`` (one package per modality).

* ``sensory.trap`` — SNMP traps and informs over UDP (v1, v2c, v3 USM).
* ``sensory.webhook`` — Meraki Dashboard webhooks (framework-free: the HTTP
  route that feeds it lives in ``bridge/http``).

Receivers are thin: receive → validate/authenticate → decode → normalise →
publish on an injected ``contracts.bus.EventBus``. They may import contracts,
errors, config, metrics, testing and ``thalamus.subjects`` — never another region
or a concrete bus.
"""

__all__: list[str] = []
