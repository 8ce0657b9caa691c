"""Blocks in flight: results in submission order, never more than `in_flight` pending, errors where they belong."""

import threading
import time

import pytest

from recsys_core.serving.blocks_in_flight import BlocksInFlight


def test_results_come_back_in_order_with_at_most_in_flight_pending():
    running, most = [0], [0]
    lock = threading.Lock()

    def score(block):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.01 * (5 - block % 5))  # later blocks finish first
        with lock:
            running[0] -= 1
        return block * block

    flight = BlocksInFlight(score, in_flight=3)
    done = []
    for block in range(20):
        emitted = list(flight.submit(f"b{block}", block))
        assert len(emitted) == (1 if block >= 3 else 0)  # one out for each one in, past the first three
        done += emitted
    done += list(flight.drain())
    flight.close()
    assert done == [(f"b{block}", block * block) for block in range(20)]
    assert most[0] <= 3


def test_a_failed_block_raises_in_its_turn_and_forget_drops_the_rest():
    def score(block):
        if block == 1:
            raise ValueError("block 1 is broken")
        return block

    flight = BlocksInFlight(score, in_flight=4)
    for block in range(3):
        assert not list(flight.submit(block, block))
    drained = flight.drain()
    assert next(drained) == (0, 0)
    with pytest.raises(ValueError, match="block 1 is broken"):
        next(drained)
    flight.forget()
    assert list(flight.drain()) == []
    flight.close()
