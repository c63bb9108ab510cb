"""network.cuda_graphs.no_garbage_collection: dead cycles are freed before a capture, none during it."""
import gc
import weakref

import pytest

from network.cuda_graphs import no_garbage_collection


class _Cycle:
    def __init__(self) -> None:
        self.me = self


@pytest.mark.parametrize("enabled_before", [True, False])
def test_collects_first_then_keeps_the_collector_off_and_restores_it(enabled_before):
    (gc.enable if enabled_before else gc.disable)()
    try:
        dead = _Cycle()
        freed = weakref.ref(dead)
        del dead
        with no_garbage_collection():
            assert freed() is None, "a dead cycle must be freed before the capture starts"
            assert not gc.isenabled()
        assert gc.isenabled() is enabled_before
        with pytest.raises(RuntimeError), no_garbage_collection():
            raise RuntimeError("capture failed")
        assert gc.isenabled() is enabled_before
    finally:
        gc.enable()
