"""Association rules, one small unit each (issue 8).

* ``site`` — ``site_outage``: at least N devices of one site down within a window;
* ``device`` — ``device_root``: a device down or restarted with its links' downs;
* ``cable`` — ``cable_pair``: link-downs on both ends of one cable;
* ``bgp`` — ``bgp_over_link``: a BGP drop over a link that is down;
* ``flap`` — ``flapping``: too many state changes of one interface or session.

The first four are tried in that order (highest rank first) for each new fact;
the first proposal wins. May import: contracts, config.
"""

from __future__ import annotations

from netcortex.association.rules import bgp, cable, device, flap, site
from netcortex.association.rules._proposal import Proposal

__all__ = ["ORDER", "Proposal", "bgp", "cable", "device", "flap", "site"]

#: rules tried for a new fact, highest rank first
ORDER = (site, device, cable, bgp)
