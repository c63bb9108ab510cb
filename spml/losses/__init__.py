"""The DHFR training objective (docs/method.md §2)."""
from spml.losses.memory_bank import MemoryBank
from spml.losses.objective import DHFRObjective

__all__ = ["DHFRObjective", "MemoryBank"]
