"""Fixtures for the semantic-memory unit tests: fake NetBox servers.

``fake_netbox(**kwargs)`` starts a ``tests.fake_netbox.FakeNetbox`` (real HTTP,
schema-validated); at teardown each is stopped and must have seen no invalid
request (``fake.errors`` empty).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from tests.fake_netbox import FakeNetbox, running_fake_netbox

MakeFake = Callable[..., FakeNetbox]


@pytest.fixture
def fake_netbox() -> Iterator[MakeFake]:
    """Factory: ``fake_netbox(token=..., bgp_plugin=..., inventory=...)`` → started fake."""
    with ExitStack() as stack:

        def make(**kwargs: Any) -> FakeNetbox:
            return stack.enter_context(running_fake_netbox(**kwargs))

        yield make
