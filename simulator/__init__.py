"""Simulated WhatsApp gateway (`envios gateway-sim`).

Speaks the session-manager contract (DESIGN.md section 9) for any number of
cliente_id sessions, keeps a ledger of what it "delivered", and injects faults
(session drops, latency, 5xx, 429, slow sends that still deliver, garbage
bodies, missing message ids, dropped connections, refused connections),
reproducibly under a seed. See simulator/README.md.
"""

from .faults import Faults
from .server import SimulatorServer
from .state import SimState

__all__ = ["Faults", "SimState", "SimulatorServer"]
