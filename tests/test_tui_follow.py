"""The console's follow loop without a screen: replay pacing, pauses played short, and snapshots
coalesced so a fast run costs a few redraws a second. A hand-moved clock makes the timing exact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from preflight.monitor.core import RunMonitor
from preflight.tui.follow import MAX_REPLAY_GAP_S, SNAPSHOT_INTERVAL_S, Follower

T0 = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def write_steps(run_dir: Path, times: list[float]) -> None:
    with open(run_dir / "events.jsonl", "a", encoding="utf-8") as fh:
        for i, t in enumerate(times, start=1):
            fh.write(json.dumps({"type": "step", "time": t, "step": i, "loss": 0.5, "pass_rate": 0.5,
                                 "gen_len_mean": 100.0, "truncation_rate": 0.0, "utilization": 0.9}) + "\n")


def test_replay_plays_events_at_n_times_their_recorded_pace(tmp_path):
    write_steps(tmp_path, [T0 + s for s in range(100)])  # one step a second for 100 s
    clock = Clock()
    follower = Follower(RunMonitor(tmp_path), replay_speed=10, clock=clock)
    follower.tick()
    assert follower.monitor.state.last_step == 1  # only the first event is due at the start
    clock.now = 1.0
    follower.tick()
    assert follower.monitor.state.last_step == 11  # 1 s at 10x: 10 more seconds of the run
    clock.now = 5.0
    follower.tick()
    assert follower.monitor.state.last_step == 51
    clock.now = 20.0
    follower.tick()
    follower.tick()
    assert follower.monitor.state.last_step == 100 and follower.replay_done


def test_replay_plays_a_long_pause_in_at_most_a_second(tmp_path):
    write_steps(tmp_path, [T0, T0 + 1, T0 + 3600, T0 + 3601])  # an hour with nothing in it
    clock = Clock()
    follower = Follower(RunMonitor(tmp_path), replay_speed=2, clock=clock)
    follower.tick()
    clock.now = 0.5
    follower.tick()
    assert follower.monitor.state.last_step == 2
    clock.now = 0.5 + MAX_REPLAY_GAP_S
    follower.tick()
    assert follower.monitor.state.last_step == 3  # the hour took one second, not half an hour


def test_a_fast_run_is_shown_in_coalesced_snapshots(tmp_path):
    clock = Clock()
    follower = Follower(RunMonitor(tmp_path), clock=clock)
    follower.tick()  # nothing yet: one snapshot says so
    assert follower.version == 1 and follower.latest.last_step is None
    for burst in range(40):  # 40 polls, 10 ms apart, 250 new events each: 10,000 events in 0.4 s
        write_steps(tmp_path, [T0 + burst] * 250)
        clock.now = 0.01 * (burst + 1)
        follower.tick()
    assert follower.monitor.state.events_seen == 10_000
    # 0.4 s of polling at most one snapshot per SNAPSHOT_INTERVAL_S: the screen redraws 2-3 times.
    assert follower.version <= 1 + 0.4 / SNAPSHOT_INTERVAL_S + 1
    clock.now = 1.0
    follower.tick()
    assert follower.latest.events_seen == 10_000  # the last burst is never lost, only delayed


def test_a_failing_monitor_ends_the_loop_with_the_reason_instead_of_a_crash(tmp_path):
    class Broken(RunMonitor):
        def poll(self, max_bytes: int | None = None) -> bool:
            raise OSError("the disk went away")

    follower = Follower(Broken(tmp_path))
    follower.run(lambda: False)  # returns: the error ended it
    assert follower.error == "OSError: the disk went away"


def test_a_replay_speed_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="above 0"):
        Follower(RunMonitor(tmp_path), replay_speed=0)
