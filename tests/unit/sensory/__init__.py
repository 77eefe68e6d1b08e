"""Tests for the sensory region."""
