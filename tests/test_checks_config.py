"""Static configuration checks: ranges, divisibility, intervals, metrics, stage, budget."""

from __future__ import annotations

from fakes import gpu_probes, run_checks_on

from preflight.result import Status


def static(write_spec, text: str) -> dict:
    return run_checks_on(write_spec(text), gpu_probes(), level="static")


def test_static_level_runs_no_machine_checks(write_spec):
    results = static(write_spec, "run: {name: r}\n")
    assert all(r.level == "static" for r in results.values())
    assert "hw.gpu.count" not in results and "config.batch.divisibility" in results


def test_ranges_warn_and_name_the_range(write_spec):
    results = static(write_spec, "run: {name: r}\ntraining: {learning_rate: 3.0e-5, temperature: 1.0, clip_low: 0.05}\n")
    lr = results["config.lr.range"]
    assert lr.status == Status.WARN and "1e-06-1e-05" in lr.expected
    temp = results["config.temperature.range"]
    assert temp.status == Status.WARN and "0.01-0.1" in temp.expected and "near 1.0" in temp.remediation
    clip = results["config.clip.range"]
    assert clip.status == Status.WARN and "clip_low" in clip.remediation


def test_batch_must_divide_world_size_and_group_size(write_spec):
    # 2 nodes x 8 GPUs = 16 ranks; 500 % 16 = 4 and 500 % 16 (group) = 4. Each rank samples whole
    # groups, so the unit is 16 x 16 = 256 (the runner's batch plan refuses anything else).
    results = static(write_spec, "run: {name: r}\nhardware: {nodes: 2}\ntraining: {batch_size: 500, group_size: 16}\n")
    r = results["config.batch.divisibility"]
    assert r.status == Status.FAIL
    assert "500 % world size 16 = 4" in r.found
    assert "256 or 512" in r.remediation


def test_batch_divisible_by_world_and_group_but_not_their_product_fails(write_spec):
    # 2 CPU workers, groups of 4: 4 % 2 == 0 and 4 % 4 == 0, but 2 ranks x 4 = 8 does not divide 4.
    text = ("run: {name: r}\nhardware: {gpu_required: false, gpus_per_node: 0}\n"
            "distributed: {cpu_workers: 2}\ntraining: {batch_size: 4, group_size: 4}\n")
    r = static(write_spec, text)["config.batch.divisibility"]
    assert r.status == Status.FAIL and "4 % (world size x group_size) 8 = 4" in r.found
    assert "multiple of 8" in r.remediation
    ok = static(write_spec, "run: {name: r}\nhardware: {nodes: 2}\ntraining: {batch_size: 512, group_size: 16}\n")
    assert ok["config.batch.divisibility"].status == Status.PASS
    assert "32 prompts/step" in ok["config.batch.divisibility"].found


def test_group_of_one_fails(write_spec):
    results = static(write_spec, "run: {name: r}\ntraining: {group_size: 1, batch_size: 512}\n")
    assert results["config.group_size"].status == Status.FAIL


def test_stage_band_for_batch_size(write_spec):
    small = static(write_spec, "run: {name: r, stage: small}\ntraining: {batch_size: 1024}\nhardware: {nodes: 2}\n")
    r = small["config.batch.range"]
    assert r.status == Status.WARN and "256-512" in r.expected and "small stage" in r.expected


def test_intervals(write_spec):
    never = static(write_spec, "run: {name: r}\ntraining: {max_steps: 50, eval_interval: 100}\ncheckpoints: {save_interval: 50}\n")
    assert never["config.intervals"].status == Status.FAIL
    assert "never validate" in never["config.intervals"].remediation
    stale = static(write_spec, "run: {name: r}\ntraining: {eval_interval: 100}\ncheckpoints: {save_interval: 150}\n")
    assert stale["config.intervals"].status == Status.WARN


def test_best_checkpoint_metric_must_be_evaluated(write_spec):
    no_val = static(write_spec, "run: {name: r}\ndata: {train: t.jsonl}\n")
    r = no_val["config.checkpoint.metric"]
    assert r.status == Status.FAIL and "data.val" in r.found
    unknown = static(write_spec, "run: {name: r}\ncheckpoints: {metric: bleu}\n")
    assert unknown["config.checkpoint.metric"].status == Status.FAIL
    step_metric = static(write_spec, "run: {name: r}\ncheckpoints: {metric: training_loss}\n")
    assert step_metric["config.checkpoint.metric"].status == Status.PASS


def test_early_stopping_metric_and_horizon(write_spec):
    r = static(write_spec, "run: {name: r}\nearly_stopping: {metric: vibes}\n")["config.early_stopping.metric"]
    assert r.status == Status.FAIL
    r = static(write_spec, "run: {name: r}\ntraining: {max_steps: 500}\n")["config.early_stopping.metric"]
    assert r.status == Status.WARN and "patience covers 1000 steps" in r.found
    off = static(write_spec, "run: {name: r}\nearly_stopping: {enabled: false}\n")["config.early_stopping.metric"]
    assert off.status == Status.SKIP


def test_recovery_needs_retries(write_spec):
    r = static(write_spec, "run: {name: r}\ndistributed: {max_retries: 0}\n")["config.recovery.retries"]
    assert r.status == Status.FAIL and "max_retries: 3" in r.remediation


def test_stage_consistency(write_spec):
    # 14B in the small stage (1-8B): outside the band, not far beyond it: a warning.
    r = static(write_spec, "run: {name: r, stage: small}\nmodel: {params_b: 14}\nhardware: {nodes: 2}\n")["config.stage"]
    assert r.status == Status.WARN and "1-8 B" in r.expected
    # 70B is more than 4x the band, and its GPU-hour estimate is far over the stage's 5,000: fails.
    far = static(write_spec, "run: {name: r, stage: small}\nmodel: {params_b: 70}\nhardware: {nodes: 2}\n")["config.stage"]
    assert far.status == Status.FAIL and "GPU hours against the stage's ceiling of 5,000" in far.found
    # The same model for a few steps fits the GPU-hour budget: only the size warning.
    short = static(write_spec, "run: {name: r, stage: small}\nmodel: {params_b: 70}\nhardware: {nodes: 2}\n"
                   "training: {max_steps: 10}\n")["config.stage"]
    assert short.status == Status.WARN
    moe = static(write_spec, "run: {name: r, stage: large}\nmodel: {params_b: 109, active_params_b: 17, architecture: moe}\n")
    assert moe["config.stage"].status == Status.PASS
    wrong_algo = static(write_spec, "run: {name: r, stage: large}\nalgorithm: {name: grpo}\n")
    assert "not planned for the large stage" in wrong_algo["config.stage"].found


def test_budget_against_stage_band(write_spec):
    # small preset: 8B dense, 512 x (2048 + 16384) x 0.5 tokens, 3000 steps at 0.25 MFU of 989 TFLOP/s.
    r = static(write_spec, "run: {name: r, stage: small}\nhardware: {nodes: 2}\n")["budget.gpu_hours"]
    assert r.status == Status.PASS, r.found
    assert "GPU hours" in r.found and "MFU" in r.found
    over = static(write_spec, "run: {name: r, stage: small}\nhardware: {nodes: 2}\ntraining: {max_steps: 30000}\n")
    b = over["budget.gpu_hours"]
    assert b.status == Status.FAIL and "max_steps" in b.remediation
    under = static(write_spec, "run: {name: r, stage: small}\nhardware: {nodes: 2}\ntraining: {max_steps: 100}\n")
    assert under["budget.gpu_hours"].status == Status.WARN


def test_budget_skips_without_gpus_and_unknown_peak(write_spec):
    cpu = static(write_spec, "run: {name: r}\nhardware: {gpu_required: false}\n")
    assert cpu["budget.gpu_hours"].status == Status.SKIP
    odd = static(write_spec, "run: {name: r}\nhardware: {gpu_models: [MI300X]}\n")
    assert "budget.peak_tflops" in odd["budget.gpu_hours"].found


def test_pass_rate_rule_cadence_against_eval_interval(write_spec):
    text = """\
    run: {name: r}
    monitoring:
      rules:
        - {id: pr, metric: pass_rate, op: "<", threshold: 0.6, every_steps: 50, action: change recipe}
    """
    r = static(write_spec, text)["monitor.rules"]
    assert r.status == Status.WARN and "pr" in r.remediation


def test_explain_shows_the_threshold_tables_from_the_presets():
    from preflight.presets import LR_BY_MODEL_SIZE, STAGES
    from preflight.service.catalog import describe_check

    lr = describe_check("config.lr.range").explain
    for size in LR_BY_MODEL_SIZE:
        assert size.band.describe() in lr and size.models in lr
    assert "1e-07-0.0001" in lr  # the pretrained band's fail limits, 10x either side
    stage = describe_check("config.stage").explain
    for s in STAGES.values():
        assert s.name in stage and s.dense_params_b.describe("B") in stage
    assert "cispo" in describe_check("config.clip.range").explain


def test_standard_sampling_warns_and_only_unworkable_temperatures_fail(write_spec):
    warm = static(write_spec, "run: {name: r}\ntraining: {temperature: 1.0}\n")["config.temperature.range"]
    assert warm.status == Status.WARN and "tuning range" in warm.remediation
    for t in (0.0005, 2.5):
        r = static(write_spec, f"run: {{name: r}}\ntraining: {{temperature: {t}}}\n")["config.temperature.range"]
        assert r.status == Status.FAIL, t


def test_cispo_takes_scalerls_large_eps_max(write_spec):
    ok = static(write_spec, "run: {name: r}\nalgorithm: {loss: cispo}\ntraining: {clip_low: 1.0, clip_high: 5.0}\n")
    assert ok["config.clip.range"].status == Status.PASS
    ppo = static(write_spec, "run: {name: r}\ntraining: {clip_high: 5.0}\n")["config.clip.range"]
    assert ppo.status == Status.WARN
