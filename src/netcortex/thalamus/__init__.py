"""Thalamus: the event bus region — subject grammar, in-memory and NATS JetStream buses."""
