"""Tests for the SNMP trap receiver (sensory/trap)."""
