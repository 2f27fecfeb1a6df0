"""How a load treats the cyclic garbage collector: off while it unpickles,
and what it built then handed to the oldest generation, with the
collector's own bookkeeping kept honest.

Unpickling creates objects and frees almost none, which is the worst case
for a generational collector: it runs every few hundred allocations and,
as the survivors pile up, rescans them all again and again.  A session of
200,000 small dicts loaded in 55 ms of CPU time with it on, 37 ms off.

Turned on again, the collector would scan everything the load built in
one collection of the youngest generation, each object once, none of them
in the processor's cache any more (2,800 functions and classes: 8 of 45
ms; the 200,000 dicts: 140 of 535 ms).  A session's objects are long-lived
by nature, so a complete load hands them to the oldest generation directly
(``gc.freeze()`` then ``gc.unfreeze()``, which the documentation says puts
them there: list splices, no scan).

The collector decides when to scan its oldest generation by counting the
objects its own collections moved there since the last full collection;
objects moved there this way are not counted.  So that garbage made of
them (a session loaded again replaces the classes of the last one, which
are cycles) is not kept forever, the objects handed over are counted
here: a load that finds that earlier loads handed over as many objects as
half of all the others the collector tracks, and that no full collection
ran since, runs one (the collector's own rule waits for a quarter of the
oldest generation, and then for its own next collections).  A program
that loads one session never pays for it; one that loads again and again
keeps the garbage of about two loads.
"""

from __future__ import annotations

import gc
import threading

#: objects handed to the oldest generation since the last full collection
_handed = 0
#: how many full collections had run when ``_handed`` was last counted
_full_seen = -1
#: how many other objects the collector tracked when last counted (0: never)
_others = 0
_lock = threading.Lock()


class collector_paused:
    """``with collector_paused() as collector``: the collector off while the
    block runs (unless it was off already).

    Set ``collector.keep = True`` when everything the block built is kept
    and nothing else it made is garbage (the restored variables of a
    complete load, the loader freed by reference counting): then it goes
    to the oldest generation.  Never while the program keeps objects frozen
    itself (``gc.freeze()`` before a fork): unfreezing would release those too.
    """

    def __init__(self):
        self.keep = False
        self._paused = False

    def __enter__(self) -> collector_paused:
        self._paused = gc.isenabled()
        if self._paused:
            gc.disable()
        return self

    def __exit__(self, *exc_info) -> None:
        if not self._paused:
            return
        try:
            if self.keep and exc_info[0] is None:
                _hand_to_oldest()
        finally:
            gc.enable()


def _hand_to_oldest() -> None:
    global _handed, _full_seen, _others
    with _lock:
        if gc.get_freeze_count():  # the program froze objects itself: unfreezing would release them
            return  # (this counts them one by one: free when there are none)
        # What the load built is (about) what the youngest generation counts:
        # tracked objects allocated since its last collection, less those freed.
        young = gc.get_count()[0]
        full = gc.get_stats()[-1]["collections"]
        if full != _full_seen:  # a full collection ran since: it counted the earlier ones
            _handed, _full_seen = 0, full
        gc.freeze()
        if _handed and _handed * 2 > _others:
            # A full collection may be due: count what the collector tracks
            # (one by one, hence only now: a first load never does).
            _others = gc.get_freeze_count() - young
        gc.unfreeze()
        if _handed * 2 > _others:
            # Earlier loads handed over half as many objects as the others
            # the collector tracks, and no full collection came: this load
            # runs the one that is due.
            gc.collect()
            _handed, _full_seen = 0, gc.get_stats()[-1]["collections"]
        else:
            _handed += young
