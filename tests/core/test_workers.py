"""The workers that drive per-device programs: results in order, messages in order, errors not lost."""

import threading

import pytest

from sideways_tf.core import workers

pytestmark = pytest.mark.backend_independent("plain Python threads and queues")


def test_each_group_gets_its_neighbours_messages_in_order():
    def work(g, boxes):
        got = []
        for step in range(5):
            if g > 0:
                got.append(boxes.get((g - 1, g)))
            if g < 2:
                boxes.put((g, g + 1), (g, step))
        return got

    assert workers.run(3, work) == [[], [(0, s) for s in range(5)], [(1, s) for s in range(5)]]


def test_a_failing_worker_stops_the_others_and_its_error_is_raised():
    started = threading.Event()

    def work(g, boxes):
        if g == 0:
            started.wait(5)
            raise ValueError("group 0 failed")
        started.set()
        return boxes.get((0, 1))  # never sent: the abort ends the wait

    with pytest.raises(ValueError, match="group 0 failed"):
        workers.run(2, work)


def test_a_mailbox_opened_after_an_abort_does_not_wait():
    boxes = workers.Mailboxes()
    boxes.abort()
    with pytest.raises(workers.Aborted):
        boxes.get(("late", 1))
