"""FIFO memory of the segment prototypes of the last training steps (docs/method.md §2.5 step 8; §6 F)."""
from __future__ import annotations

import torch
from torch import Tensor

PASS_SUFFIXES = ("", "_aug")
PROTOTYPE_FIELDS = ("prototype", "prototype_semantic_label", "prototype_instance_label", "prototype_batch_index")
STATE_KEYS = tuple(f"{field}{suffix}" for field in PROTOTYPE_FIELDS for suffix in PASS_SUFFIXES)
BATCH_INDEX_KEYS = tuple(f"prototype_batch_index{suffix}" for suffix in PASS_SUFFIXES)


class MemoryBank:
    """The prototypes (plain and augmented) of the last ``size`` steps, oldest first.

    :meth:`push` takes the ``memory_state`` that :class:`~spml.losses.DHFRObjective` returns:
    the ``STATE_KEYS`` tensors and ``batch_size``, the global (gathered) batch size of that
    step as a Python int. As in the release's ``train.py``, after appending (and dropping the
    oldest entry beyond ``size``) every stored ``prototype_batch_index*`` is shifted by that
    batch size, so stored batch indices never collide with the current step's ``0..B−1``.
    Nothing is read back from the device.
    """

    def __init__(self, size: int = 2) -> None:
        if size < 0:
            raise ValueError(f"memory bank size must be >= 0, got {size}")
        self.size = size
        self._entries: list[dict[str, Tensor]] = []

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def entries(self) -> list[dict[str, Tensor]]:
        """The stored steps, oldest first (each a dict of the ``STATE_KEYS`` tensors)."""
        return list(self._entries)

    def push(self, step_state: dict) -> None:
        """Store one step's prototypes (detached copies), drop the oldest beyond ``size``, shift batch indices."""
        _check_keys(step_state, (*STATE_KEYS, "batch_size"), "memory state")
        batch_size = step_state["batch_size"]
        if not isinstance(batch_size, int):
            raise TypeError(f"memory state batch_size must be a Python int, got {type(batch_size).__name__}")
        self._entries.append({key: step_state[key].detach().clone() for key in STATE_KEYS})
        self._keep_newest()
        for entry in self._entries:
            for key in BATCH_INDEX_KEYS:
                entry[key] = entry[key] + batch_size

    def state_dict(self) -> dict[str, list[dict[str, Tensor]]]:
        """``{"entries": [...]}``: the stored steps, oldest first, batch indices already shifted."""
        return {"entries": [dict(entry) for entry in self._entries]}

    def load_state_dict(self, state: dict[str, list[dict[str, Tensor]]]) -> None:
        """Replace the stored steps by those of a :meth:`state_dict` (the newest ``size`` of them), as they are.

        The tensors are taken on the device they are on: load a checkpoint with ``map_location``.
        """
        for entry in state["entries"]:
            _check_keys(entry, STATE_KEYS, "memory bank entry")
        self._entries = [{key: entry[key].detach() for key in STATE_KEYS} for entry in state["entries"]]
        self._keep_newest()

    def semantic_prototypes(self) -> tuple[Tensor, Tensor] | None:
        """``(prototypes [M, D], semantic labels [M])`` of all entries: plain ones, then augmented ones.

        ``None`` when the bank is empty.
        """
        if not self._entries:
            return None
        pairs = [
            (entry[f"prototype{suffix}"], entry[f"prototype_semantic_label{suffix}"])
            for suffix in PASS_SUFFIXES
            for entry in self._entries
        ]
        return torch.cat([prototype for prototype, _ in pairs]), torch.cat([label for _, label in pairs])

    def _keep_newest(self) -> None:
        del self._entries[: max(len(self._entries) - self.size, 0)]


def _check_keys(state: dict, keys: tuple[str, ...], what: str) -> None:
    missing = [key for key in keys if key not in state]
    if missing:
        raise KeyError(f"{what} lacks {', '.join(missing)}")
