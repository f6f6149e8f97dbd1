"""The engine: concurrency, timeouts, crashes, severity overrides and waivers."""

from __future__ import annotations

import datetime as dt
import threading
import time

from fakes import gpu_probes

from preflight.engine import CheckDef, Context, run_checks
from preflight.result import Outcome, Status, failed, gate_passes, passed, warned
from preflight.spec import load_spec


def ctx_for(write_spec, text: str = "run: {name: r}\n", today: dt.date | None = None) -> Context:
    spec = load_spec(write_spec(text))
    return Context(spec=spec, probes=gpu_probes(), today=today or dt.date(2026, 11, 29))


def make(cid: str, fn, timeout_s: float = 5.0) -> CheckDef:
    return CheckDef(cid, cid.upper(), "static", fn, timeout_s=timeout_s)


def test_checks_run_concurrently_and_results_keep_plan_order(write_spec):
    barrier = threading.Barrier(3, timeout=2)

    def meet(_ctx: Context) -> Outcome:
        barrier.wait()  # only returns if all three run at the same time
        return passed("met")

    results = run_checks([make(f"c.{i}", meet) for i in range(3)], ctx_for(write_spec))
    assert [r.id for r in results] == ["c.0", "c.1", "c.2"]
    assert all(r.status == Status.PASS for r in results)


def test_a_hanging_check_is_an_error_after_its_timeout_and_does_not_block(write_spec):
    def hang(_ctx: Context) -> Outcome:
        time.sleep(30)
        return passed("never")

    t0 = time.perf_counter()
    results = run_checks([make("slow", hang, timeout_s=0.3), make("fast", lambda _c: passed("ok"))], ctx_for(write_spec))
    assert time.perf_counter() - t0 < 3
    slow = results[0]
    assert slow.status == Status.ERROR and "did not finish within 0.3 s" in slow.found
    assert not gate_passes(results)


def test_a_crashing_check_is_an_error_with_evidence(write_spec):
    def crash(_ctx: Context) -> Outcome:
        raise KeyError("boom")

    r = run_checks([make("crash", crash)], ctx_for(write_spec))[0]
    assert r.status == Status.ERROR
    assert "KeyError" in r.found and "--waive crash=REASON" in r.remediation
    assert "Traceback" in r.evidence["traceback"]


def test_waiver_turns_fail_into_visible_waived_with_reason(write_spec):
    text = "run: {name: r}\nwaivers:\n  - {check: bad, reason: known flaky NIC on rack 7, by: alice}\n"
    r = run_checks([make("bad", lambda _c: failed("x", "y", "z"))], ctx_for(write_spec, text))[0]
    assert r.status == Status.WAIVED
    assert r.waiver == {"check": "bad", "reason": "known flaky NIC on rack 7", "by": "alice"}
    assert r.evidence["status_before_waiver"] == "fail"
    assert gate_passes([r])


def test_waiver_patterns_and_errors(write_spec):
    text = "run: {name: r}\nwaivers:\n  - {check: 'hw.*', reason: bring-up of the new cluster}\n"

    def crash(_c: Context) -> Outcome:
        raise RuntimeError

    r = run_checks([make("hw.x", crash)], ctx_for(write_spec, text))[0]
    assert r.status == Status.WAIVED


def test_expired_waiver_is_not_applied_and_says_so(write_spec):
    text = "run: {name: r}\nwaivers:\n  - {check: bad, reason: temporary until the fix, expires: '2026-01-31'}\n"
    r = run_checks([make("bad", lambda _c: failed("x", "y", "z"))], ctx_for(write_spec, text))[0]
    assert r.status == Status.FAIL
    assert "waiver expired on 2026-01-31" in r.note


def test_unneeded_waiver_is_noted(write_spec):
    text = "run: {name: r}\nwaivers:\n  - {check: good, reason: was failing last week}\n"
    r = run_checks([make("good", lambda _c: passed("fine"))], ctx_for(write_spec, text))[0]
    assert r.status == Status.PASS and "can be removed" in r.note


def test_severity_overrides(write_spec):
    text = "run: {name: r}\nchecklist:\n  severity: {a: warn, b: fail, c: off}\n"
    called = []

    def c_fn(_c: Context) -> Outcome:
        called.append("c")
        return failed("x", "y", "z")

    results = run_checks([make("a", lambda _c: failed("x", "y", "z")), make("b", lambda _c: warned("x", "y", "z")),
                          make("c", c_fn)], ctx_for(write_spec, text))
    a, b, c = results
    assert a.status == Status.WARN and "only warns" in a.note
    assert b.status == Status.FAIL and "blocks" in b.note
    assert c.status == Status.SKIP and called == []


def test_fail_on_warn_blocks_the_gate(write_spec):
    results = run_checks([make("w", lambda _c: warned("x", "y", "z"))], ctx_for(write_spec))
    assert gate_passes(results, "fail")
    assert not gate_passes(results, "warn")


def test_listeners_see_every_start_and_finish(write_spec):
    started, finished = [], []
    run_checks([make("a", lambda _c: passed("")), make("b", lambda _c: passed(""))], ctx_for(write_spec),
               on_start=lambda d: started.append(d.id), on_finish=lambda r: finished.append(r.id))
    assert sorted(started) == ["a", "b"] and sorted(finished) == ["a", "b"]


def test_every_registered_check_belongs_to_a_checklist_item(write_spec):
    from preflight.checklist import item_of, load_checklist
    from preflight.engine import plan

    spec = load_spec(write_spec("run: {name: r}\n"))
    items = list(load_checklist())
    for d in plan(spec, "active"):
        assert item_of(d.id, items) != "other", d.id
        assert d.explain, f"{d.id} has no explanation for `preflight explain`"
