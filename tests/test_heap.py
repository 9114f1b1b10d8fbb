"""Batch work runs with the heap that was there before it frozen, and gives it back after."""

import gc
import weakref

from chatkit_lab import MirrorModel
from chatkit_lab._heap import frozen_heap, settle


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


def dropped_cycle() -> weakref.ref:
    node = Node()
    return weakref.ref(node)  # node is garbage as this returns, held only by its own cycle


def test_the_heap_stays_frozen_until_the_last_batch_ends_and_its_garbage_is_collected_after():
    assert gc.get_freeze_count() == 0
    gc.disable()  # no automatic collection between the steps of this test
    try:
        with frozen_heap():
            assert gc.get_freeze_count() > 0
            with frozen_heap():  # a second batch at the same time (another lab, another replay)
                pass
            assert gc.get_freeze_count() > 0  # the first batch still runs
        assert gc.get_freeze_count() == 0

        cycle = dropped_cycle()
        with frozen_heap():  # made before the batch: frozen with the rest, so not collected during it
            gc.collect()
            assert cycle() is not None
        gc.collect()  # ... but collected once the batch has ended
        assert cycle() is None
    finally:
        gc.enable()


def test_a_process_that_froze_its_own_heap_keeps_it_frozen():
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with frozen_heap():
            pass
        # not unfrozen; the count itself may fall a little: a frozen object whose last reference
        # goes (a frame of another thread, say) is freed and leaves the frozen generation
        assert gc.get_freeze_count() > frozen // 2
    finally:
        gc.unfreeze()


class Watching(MirrorModel):
    """The offline model, noting whether the heap was frozen when it was called."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.frozen: list[bool] = []

    async def stream_response(self, *args, **kwargs):
        self.frozen.append(gc.get_freeze_count() > 0)
        async for event in super().stream_response(*args, **kwargs):
            yield event


def test_eval_runs_and_replays_run_with_the_heap_frozen_and_a_chat_turn_does_not(make_lab):
    model = Watching("watching")
    lab = make_lab(model=model, warm=False)
    thread_id = lab.send_sync("hello").thread_id
    summary = lab.evaluate_sync([{"input": "one"}, {"input": "two"}], graders=[{"type": "latency", "name": "fast", "max": 60_000}],
                                progress=False).summary
    lab.replay(thread_id).run_sync(progress=False)
    assert summary["result_counts"]["passed"] == 2
    assert model.frozen == [False, True, True, True]  # the chat turn, the two items, the replayed turn
    assert gc.get_freeze_count() == 0


def test_a_server_settles_its_heap_for_good_after_collecting_its_garbage():
    cycle = dropped_cycle()
    gc.disable()
    try:
        frozen = settle()
        assert cycle() is None  # collected before the freeze, not frozen with the rest
        assert 0 < frozen // 2 < gc.get_freeze_count() <= frozen  # what it froze, less objects freed since
        with frozen_heap():  # a batch in a settled process leaves the freeze as it is
            pass
        assert gc.get_freeze_count() > frozen // 2  # not unfrozen (a freed frozen object leaves it)
    finally:
        gc.unfreeze()
        gc.enable()
