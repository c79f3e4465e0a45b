"""Scans run beside client I/O: writes keep flowing (no long stall), and a
block rewritten while the scan runs is never lost or reverted."""

import threading

from coppice import dedup

from .helpers import BS, assert_clean, make_copies, rand_bytes

COPY = 8 << 20


def test_rewrite_during_scan_is_never_lost(pool):
    # Blocks overwritten between collect and share keep their new bytes.
    data = rand_bytes(COPY, 51)
    make_copies(pool, 3, data)
    new = rand_bytes(COPY, 52)
    written = []

    def progress(phase, done, total):
        # In the middle of matching, rewrite v2 entirely (its rows are stale now).
        if phase == "match" and not written:
            pool.open_object("v2", "lun").pwrite(0, new)
            written.append(True)

    from coppice.dedup import scanner

    old = scanner.MATCH_BATCH_GROUPS
    scanner.MATCH_BATCH_GROUPS = 32
    try:
        job = dedup.Scanner(pool, progress=progress).start()
    finally:
        scanner.MATCH_BATCH_GROUPS = old
    assert written
    assert job["counters"]["refused"] > 0  # stale rows were refused by the engine
    assert bytes(pool.open_object("v2", "lun").pread(0, COPY)) == new
    assert bytes(pool.open_object("v1", "lun").pread(0, COPY)) == data
    assert_clean(pool)


def test_writer_thread_not_stalled_by_scan(pool):
    # A client writing 4 KiB blocks while a scan runs gets through between the
    # scan's batches: its writes keep completing while every phase runs (an
    # interleaving check, not a timing one), and every write is kept.
    data = rand_bytes(COPY, 53)
    make_copies(pool, 4, data)
    pool.create_volume("busy")
    pool.create_object("busy", "lun", 1 << 20)
    h = pool.open_object("busy", "lun")
    stop = threading.Event()
    wrote = threading.Condition()
    done = []
    last = {}
    seen = {}  # phase -> writer's completed-write counts at each progress report

    def writer():
        i = 0
        while not stop.is_set():
            blk = i % 256
            payload = i.to_bytes(8, "little") * (BS // 8)
            h.pwrite(blk * BS, payload)
            with wrote:
                done.append(i)
                last[blk] = payload
                wrote.notify_all()
            i += 1

    def progress(phase, n, total):
        # At a batch boundary the scan holds no engine lock: a write must
        # complete before the scan goes on (a stalled writer fails the test).
        with wrote:
            seen.setdefault(phase, []).append(len(done))
            k = len(done)
            assert wrote.wait_for(lambda: len(done) > k, timeout=60), "the writer is stalled"

    from coppice.dedup import scanner

    old = scanner.MATCH_BATCH_GROUPS
    scanner.MATCH_BATCH_GROUPS = 16
    th = threading.Thread(target=writer)
    th.start()
    try:
        job = dedup.Scanner(pool, progress=progress).start()
    finally:
        scanner.MATCH_BATCH_GROUPS = old
        stop.set()
        th.join()
    assert job["state"] == "done"
    assert "match" in seen and len(seen["match"]) > 2
    counts = seen["match"]
    # Writes completed between the match phase's batches, not only before or after it.
    assert counts[-1] > counts[0], counts
    for blk, payload in last.items():
        assert bytes(h.pread(blk * BS, BS)) == payload
    assert_clean(pool)


def test_stop_pauses_and_start_resumes(pool):
    # stop() pauses at the next batch; the next start finishes the same job.
    data = rand_bytes(COPY, 54)
    make_copies(pool, 2, data)
    sc = dedup.Scanner(pool, progress=lambda ph, d, t: sc.stop() if ph == "collect" else None)
    job = sc.start()
    assert job["state"] == "paused"
    assert dedup.status(pool, "v0")["status"] == "Pending"
    job2 = dedup.Scanner(pool).start()
    assert job2["id"] == job["id"] and job2["state"] == "done"
    assert pool.pool_space()["used_blocks"] == COPY // BS
