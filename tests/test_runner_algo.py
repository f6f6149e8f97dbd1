"""runner.algo against hand-computed values.

Every expected number is written literally; where it is not obvious, the comment next to it shows
the arithmetic (pen and paper, or a one-line `python -c` with `math` only), never a call to the
function under test.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from runner.algo import (
    LossConfig,
    PassRateTracker,
    aggregate,
    batch_normalize,
    cispo_loss,
    compute_advantages,
    finite,
    fp32_logits,
    group_advantages,
    kl_k3,
    overlong_shaping,
    policy_loss,
    ppo_clip_loss,
    ratio_and_clip_fraction,
    token_logprobs,
    zero_variance_mask,
)

LN2 = 0.6931471805599453  # math.log(2)


def close(actual: torch.Tensor, expected: list | float, tol: float = 1e-6) -> None:
    exp = torch.tensor(expected, dtype=torch.float64)
    torch.testing.assert_close(actual.detach().double(), exp, rtol=tol, atol=tol)


# --------------------------------------------------------------------------------------------
# Advantages
# --------------------------------------------------------------------------------------------

REWARDS = torch.tensor([[1.0, 0.0, 0.0, 1.0],   # mean .5, population std .5
                        [1.0, 1.0, 1.0, 1.0],   # all equal
                        [0.0, 0.0, 0.0, 1.0]])  # mean .25, population var (3*.0625+.5625)/4 = .1875


def test_group_advantages_use_the_population_std() -> None:
    adv = group_advantages(REWARDS, eps=0.0)
    # sqrt(.1875) = 0.4330127018922193; -.25/it = -0.5773502691896258 (= -1/sqrt 3), .75/it = sqrt 3
    close(adv, [[1.0, -1.0, -1.0, 1.0],
                [0.0, 0.0, 0.0, 0.0],
                [-0.5773502691896258, -0.5773502691896258, -0.5773502691896258, 1.7320508075688772]])
    # The unbiased std (divide by G-1) would give std(.25-group) = .5 -> -0.5 and 1.5: not this.
    assert not torch.isclose(adv[2, 3], torch.tensor(1.5))


def test_group_advantages_default_eps() -> None:
    adv = group_advantages(REWARDS)
    # .5 / (.5 + 1e-6) = 0.999998000004
    close(adv[0], [0.999998000004, -0.999998000004, -0.999998000004, 0.999998000004])


def test_group_advantages_without_std_is_dr_grpo_centering() -> None:
    adv = group_advantages(REWARDS, std_normalize=False)
    close(adv, [[0.5, -0.5, -0.5, 0.5], [0.0] * 4, [-0.25, -0.25, -0.25, 0.75]])


@pytest.mark.parametrize("std_normalize", [True, False])
@pytest.mark.parametrize("eps", [0.0, 1e-6])
def test_identical_rewards_give_exactly_zero_advantage(std_normalize: bool, eps: float) -> None:
    # 0.1 is not representable: a float mean of [.1]*3 may differ from .1 by an ulp.
    rewards = torch.tensor([[0.1, 0.1, 0.1], [0.7, 0.7, 0.7], [0.0, 0.0, 0.0]])
    adv = group_advantages(rewards, std_normalize=std_normalize, eps=eps)
    assert torch.equal(adv, torch.zeros(3, 3))


def test_group_of_one_and_integer_rewards() -> None:
    assert torch.equal(group_advantages(torch.tensor([[3.0], [5.0]])), torch.zeros(2, 1))
    adv = group_advantages(torch.tensor([[1, 0]]), eps=0.0)  # int rewards: mean .5, std .5
    assert adv.dtype == torch.float32
    close(adv, [[1.0, -1.0]])


def test_batch_normalize_over_all_completions() -> None:
    adv = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    # mean 2.5; var (2.25+.25+.25+2.25)/4 = 1.25; -1.5/sqrt(1.25) = -1.3416407864998738,
    # -.5/sqrt(1.25) = -0.4472135954999579
    close(batch_normalize(adv, eps=0.0), [[-1.3416407864998738, -0.4472135954999579],
                                          [0.4472135954999579, 1.3416407864998738]])
    # default eps=1e-6 only moves the 7th digit
    close(batch_normalize(adv), [[-1.3416407864998738, -0.4472135954999579],
                                 [0.4472135954999579, 1.3416407864998738]], tol=2e-6)


def test_batch_normalize_with_group_mask() -> None:
    adv = torch.tensor([[1.0, -1.0], [0.0, 0.0], [3.0, -3.0]])
    keep = torch.tensor([True, False, True])
    # stats over [1,-1,3,-3] only: mean 0, var (1+1+9+9)/4 = 5; 1/sqrt5 = 0.4472135954999579
    close(batch_normalize(adv, keep, eps=0.0), [[0.4472135954999579, -0.4472135954999579],
                                                [0.0, 0.0],
                                                [1.3416407864998738, -1.3416407864998738]])
    # a full-shape mask works the same way
    close(batch_normalize(adv, keep.unsqueeze(-1).expand(3, 2), eps=0.0)[2], [1.3416407864998738,
                                                                           -1.3416407864998738])


def test_batch_normalize_degenerate_batches_are_zero_not_nan() -> None:
    assert torch.equal(batch_normalize(torch.zeros(2, 3)), torch.zeros(2, 3))
    assert torch.equal(batch_normalize(torch.ones(2, 3), torch.tensor([False, False])),
                       torch.zeros(2, 3))


def test_zero_variance_mask() -> None:
    assert zero_variance_mask(REWARDS).tolist() == [True, False, True]
    assert zero_variance_mask(torch.tensor([[0.5], [1.0]])).tolist() == [False, False]
    assert zero_variance_mask(torch.tensor([[0, 0, 1], [2, 2, 2]])).tolist() == [True, False]


def test_overlong_shaping_several_lengths() -> None:
    # max_len 100, buffer 20: the penalty starts after 80; exceed = length - 80
    lengths = torch.tensor([50, 80, 81, 90, 99, 100, 120])
    # exceed -30, 0, 1, 10, 19, 20, 40 -> -exceed/20*factor, clamped to [-factor, 0]
    close(overlong_shaping(lengths, 100, 20, 1.0), [0.0, 0.0, -0.05, -0.5, -0.95, -1.0, -1.0])
    close(overlong_shaping(lengths, 100, 20, 0.5), [0.0, 0.0, -0.025, -0.25, -0.475, -0.5, -0.5])
    assert overlong_shaping(lengths, 100, 20, 1.0).dtype == torch.float32
    with pytest.raises(ValueError):
        overlong_shaping(lengths, 100, 0, 1.0)


# --------------------------------------------------------------------------------------------
# Per-token losses
# --------------------------------------------------------------------------------------------

# Two completions of 4 tokens; the last token is padding (with a wild log-prob there).
# ratios row 0: [1, 1.5, .5 | pad], row 1: [1, 1.5, .5 | pad]; A = +1 and -2.
RATIOS = [[1.0, 1.5, 0.5, math.exp(50.0)], [1.0, 1.5, 0.5, 2.0]]
MASK = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 0.0]])
ADV = torch.tensor([1.0, -2.0])


def ppo_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    logp = torch.log(torch.tensor(RATIOS, dtype=torch.float32)).requires_grad_(True)
    return logp, torch.zeros(2, 4)


def test_ppo_clip_loss_values_and_gradient() -> None:
    logp, old = ppo_inputs()
    loss, stats = ppo_clip_loss(logp, old, ADV, MASK, eps_low=0.2, eps_high=0.28)
    # A=+1: min(r, clip(r,.8,1.28)) = [1, 1.28, .5]      -> loss [-1, -1.28, -.5]
    # A=-2: min(-2r, -2 clip(r))     = [-2, -3, -1.6]     -> loss [2, 3, 1.6]
    close(loss, [[-1.0, -1.28, -0.5, 0.0], [2.0, 3.0, 1.6, 0.0]])
    loss.sum().backward()
    # d/dlogp = -r*A where the unclipped term wins, 0 where the clip binds:
    # row 0: [-1, 0 (r>1.28, A>0), -.5 (r<.8 but A>0: unclipped)]; row 1: [2, 3, 0 (r<.8, A<0)]
    assert logp.grad is not None
    close(logp.grad, [[-1.0, 0.0, -0.5, 0.0], [2.0, 3.0, 0.0, 0.0]])
    # clip binds on 1 of 6 response tokens on each side; the mean ratio is (1+1.5+.5)*2/6 = 1
    assert stats == pytest.approx({"clip_frac_low": 1 / 6, "clip_frac_high": 1 / 6,
                                   "ratio_mean": 1.0})


def test_ppo_clip_symmetric_is_plain_ppo() -> None:
    logp, old = ppo_inputs()
    loss, _ = ppo_clip_loss(logp, old, ADV, MASK, eps_low=0.2, eps_high=0.2)
    # A=+1: min(r, clip(r,.8,1.2)) = [1, 1.2, .5]
    close(loss[0], [-1.0, -1.2, -0.5, 0.0])


def test_ratio_and_clip_fraction_without_advantage_counts_the_band() -> None:
    logp, old = ppo_inputs()
    ratio, stats = ratio_and_clip_fraction(logp, old, MASK, 0.2, 0.28)
    close(ratio, [[1.0, 1.5, 0.5, 1.0], [1.0, 1.5, 0.5, 1.0]])  # padding ratio forced to 1
    # outside [.8, 1.28]: two tokens below, two above, of 6
    assert stats == pytest.approx({"clip_frac_low": 2 / 6, "clip_frac_high": 2 / 6,
                                   "ratio_mean": 1.0})
    _, one_sided = ratio_and_clip_fraction(logp, old, MASK, None, 0.28)
    assert one_sided["clip_frac_low"] == 0.0
    _, empty = ratio_and_clip_fraction(logp, old, torch.zeros(2, 4))
    assert empty == {"clip_frac_low": 0.0, "clip_frac_high": 0.0, "ratio_mean": 0.0}


# CISPO: ratios [.5, 1, 1.5, 2] on both rows, old log-probs [-1, -2, -.5, -1.5]
# logp = old + ln r = [-1.6931471805599453, -2.0, -0.0945348918918356, -0.8068528194400547]
CISPO_LOGP = [-1.6931471805599453, -2.0, -0.0945348918918356, -0.8068528194400547]
CISPO_OLD = [-1.0, -2.0, -0.5, -1.5]
CISPO_MASK = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 0.0]])


def cispo_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    logp = torch.tensor([CISPO_LOGP, CISPO_LOGP], dtype=torch.float64, requires_grad=True)
    return logp, torch.tensor([CISPO_OLD, CISPO_OLD], dtype=torch.float64)


def test_cispo_value_and_gradient() -> None:
    logp, old = cispo_inputs()
    adv = torch.tensor([2.0, -1.0], dtype=torch.float64)
    loss, stats = cispo_loss(logp, old, adv, CISPO_MASK, eps_high=0.28)
    # w = min(r, 1.28) = [.5, 1, 1.28, 1.28]; loss = -w * A * logp
    # row 0 (A=2):  .5*2*1.6931471805599453 = 1.6931471805599453, 1*2*2 = 4,
    #               -2.56*0.0945348918918356 = -0.24200932324309915 -> +0.242..., 2.56*0.80685... =
    #               2.0655432177665403
    # row 1 (A=-1): w*logp = [-0.8465735902799727, -2.0, -0.12100466162154957, 0 (masked)]
    close(loss, [[1.6931471805599453, 4.0, 0.24200932324309915, 2.0655432177665403],
                 [-0.8465735902799727, -2.0, -0.12100466162154957, 0.0]], tol=1e-12)
    loss.sum().backward()
    # d loss / d logp = -w * A (the weight is stop-gradient): row 0 -2w, row 1 +w
    assert logp.grad is not None
    close(logp.grad, [[-1.0, -2.0, -2.56, -2.56], [0.5, 1.0, 1.28, 0.0]], tol=1e-12)
    # truncated: r=1.5 and r=2 on row 0, r=1.5 on row 1 -> 3 of 7; no lower bound
    # mean ratio (.5+1+1.5+2 + .5+1+1.5)/7 = 8/7
    assert stats == pytest.approx({"clip_frac_low": 0.0, "clip_frac_high": 3 / 7,
                                   "ratio_mean": 8 / 7})


def test_cispo_lower_truncation_and_gradient_where_ppo_would_clip() -> None:
    logp, old = cispo_inputs()
    adv = torch.tensor([2.0, -1.0], dtype=torch.float64)
    loss, stats = cispo_loss(logp, old, adv, CISPO_MASK, eps_high=0.28, eps_low=0.2)
    # w(r=.5) = .8 now: .8*2*1.6931471805599453 = 2.7090354888959125
    close(loss[0, 0], 2.7090354888959125, tol=1e-12)
    loss.sum().backward()
    assert logp.grad is not None
    # every response token keeps a gradient, also r=2 with A>0 where the PPO clip would give 0
    close(logp.grad, [[-1.6, -2.0, -2.56, -2.56], [0.8, 1.0, 1.28, 0.0]], tol=1e-12)
    assert stats["clip_frac_low"] == pytest.approx(2 / 7)


def test_kl_k3_values_and_gradient() -> None:
    logp = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    ref = torch.tensor([LN2, -LN2, 0.0], dtype=torch.float64)
    k3 = kl_k3(logp, ref)
    # log_ratio ln2: 2 - ln2 - 1 = 0.3068528194400547; -ln2: .5 + ln2 - 1 = 0.1931471805599453
    close(k3, [0.3068528194400547, 0.1931471805599453, 0.0], tol=1e-12)
    assert k3[2].item() == 0.0
    k3.sum().backward()
    # d k3 / d logp = 1 - exp(ref - logp) = [1-2, 1-.5, 0]
    assert logp.grad is not None
    close(logp.grad, [-1.0, 0.5, 0.0], tol=1e-12)
    assert bool((kl_k3(torch.randn(50), torch.randn(50)) >= 0).all())


# --------------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------------

NAN = float("nan")
# 4 completions, 2 prompts of G=2; lengths 4, 1, 2, 1; padding holds NaN/Inf to prove it is ignored
PER_TOKEN = [[1.0, 2.0, 3.0, 4.0],
             [5.0, NAN, NAN, NAN],
             [2.0, 2.0, float("inf"), NAN],
             [6.0, NAN, NAN, NAN]]
AGG_MASK = torch.tensor([[1.0, 1.0, 1.0, 1.0],
                         [1.0, 0.0, 0.0, 0.0],
                         [1.0, 1.0, 0.0, 0.0],
                         [1.0, 0.0, 0.0, 0.0]])


@pytest.mark.parametrize(("mode", "expected"), [
    ("token", 3.125),                 # (1+2+3+4+5+2+2+6) / 8 = 25/8
    ("sequence", 3.875),              # mean(2.5, 5, 2, 6) = 15.5/4
    ("prompt", 3.1666666666666665),   # mean((10+5)/5, (4+6)/3) = (3 + 10/3)/2
])
def test_aggregate_modes_differ_on_uneven_lengths(mode: str, expected: float) -> None:
    x = torch.tensor(PER_TOKEN, requires_grad=True)
    out = aggregate(x, AGG_MASK, mode, group_size=2)
    assert out.item() == pytest.approx(expected)
    out.backward()
    assert x.grad is not None and finite(x.grad)


def test_aggregate_gradients_are_the_token_weights() -> None:
    x = torch.tensor(PER_TOKEN, requires_grad=True)
    aggregate(x, AGG_MASK, "sequence", group_size=2).backward()
    assert x.grad is not None
    # each sequence weighs 1/4, spread over its own tokens: 1/16, 1/4, 1/8, 1/4
    close(x.grad, [[1 / 16] * 4, [0.25, 0, 0, 0], [0.125, 0.125, 0, 0], [0.25, 0, 0, 0]])
    x.grad = None
    aggregate(x, AGG_MASK, "prompt", group_size=2).backward()
    # prompt 0 has 5 tokens, prompt 1 has 3; each prompt weighs 1/2 -> 1/10 and 1/6 per token
    close(x.grad, [[0.1] * 4, [0.1, 0, 0, 0], [1 / 6, 1 / 6, 0, 0], [1 / 6, 0, 0, 0]])


def test_aggregate_skips_an_all_masked_row_and_an_empty_batch_is_zero() -> None:
    x = torch.tensor([[1.0, 2.0], [9.0, NAN]])
    m = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    for mode in ("token", "sequence", "prompt"):
        assert aggregate(x, m, mode, group_size=1).item() == pytest.approx(1.5)
    # prompt with G=2: one group of 2 tokens -> 1.5 too
    assert aggregate(x, m, "prompt", group_size=2).item() == pytest.approx(1.5)
    y = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    for mode in ("token", "sequence", "prompt"):
        out = aggregate(y, torch.zeros(2, 2), mode, group_size=1)
        assert out.item() == 0.0
        out.backward()
        assert y.grad is not None and torch.equal(y.grad, torch.zeros(2, 2))


def test_aggregate_rejects_bad_mode_and_group_size() -> None:
    x = torch.ones(3, 2)
    with pytest.raises(ValueError):
        aggregate(x, torch.ones(3, 2), "prompt", group_size=2)
    with pytest.raises(ValueError):
        aggregate(x, torch.ones(3, 2), "seq-mean", group_size=1)


# --------------------------------------------------------------------------------------------
# Pass-rate tracker
# --------------------------------------------------------------------------------------------


def test_pass_rate_tracker_running_rate_and_drop() -> None:
    t = PassRateTracker(threshold=0.9)
    assert not t.should_drop("a") and t.pass_rate("a") is None
    t.update("a", torch.tensor([1.0, 1.0, 1.0, 0.0]))
    assert t.pass_rate("a") == pytest.approx(0.75)             # 3/4
    t.update("a", [1, 1, 1, 1])
    assert t.pass_rate("a") == pytest.approx(0.875)            # 7/8
    assert not t.should_drop("a")
    t.update("a", [1, 1, 1, 1])
    assert t.pass_rate("a") == pytest.approx(11 / 12)           # 0.9166...
    assert t.should_drop("a")
    t.update("b", [1.0] * 9 + [0.0])                            # exactly 0.9 -> dropped (>=)
    assert t.should_drop("b")
    assert len(t) == 2


def test_pass_rate_tracker_state_dict_round_trip() -> None:
    t = PassRateTracker(threshold=0.8)
    t.update("x", [1, 0])
    t.update("y", [1, 1, 1, 1])
    state = json.loads(json.dumps(t.state_dict()))  # survives a JSON checkpoint
    u = PassRateTracker()
    u.load_state_dict(state)
    assert u.threshold == 0.8
    assert u.pass_rate("x") == 0.5 and u.should_drop("y") and not u.should_drop("x")


# --------------------------------------------------------------------------------------------
# Numerics
# --------------------------------------------------------------------------------------------


def test_fp32_logits_beats_the_bf16_matmul() -> None:
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(2, 3, 256, generator=gen).to(torch.bfloat16)
    weight = torch.randn(64, 256, generator=gen).to(torch.bfloat16)
    reference = hidden.double() @ weight.double().T
    logits = fp32_logits(hidden, weight)
    assert logits.dtype == torch.float32 and logits.shape == (2, 3, 64)
    err_fp32 = (logits.double() - reference).abs().max().item()
    err_bf16 = ((hidden @ weight.T).double() - reference).abs().max().item()
    assert err_fp32 < 1e-3 < err_bf16
    bias = torch.ones(64, dtype=torch.bfloat16)
    assert torch.allclose(fp32_logits(hidden, weight, bias), logits + 1.0)


def test_token_logprobs_by_hand() -> None:
    # logits ln([1, 2, 3, 4]) -> softmax [.1, .2, .3, .4]; uniform logits -> 1/4 each
    row = [0.0, LN2, 1.0986122886681098, 2 * LN2]  # math.log(3) = 1.0986122886681098
    logits = torch.tensor([[row, row, [0.0, 0.0, 0.0, 0.0]]]).to(torch.bfloat16)
    tokens = torch.tensor([[3, 0, 2]])
    out = token_logprobs(logits, tokens)
    assert out.dtype == torch.float32 and out.shape == (1, 3)
    # ln .4 = -0.916290731874155, ln .1 = -2.3025850929940455, ln .25 = -1.3862943611198906
    # (bf16 logits round ln3 and 2 ln2 slightly, hence the tolerance)
    close(out, [[-0.916290731874155, -2.3025850929940455, -1.3862943611198906]], tol=2e-2)
    exact = token_logprobs(logits.float(), tokens)
    close(exact[0, 2], -1.3862943611198906)


def test_finite() -> None:
    assert finite()
    assert finite(torch.tensor(1.0), torch.zeros(3), 2.5, torch.empty(0))
    assert not finite(torch.tensor([1.0, float("inf")]))
    assert not finite(torch.tensor(1.0), torch.tensor(float("nan")))
    assert not finite(float("-inf"))


# --------------------------------------------------------------------------------------------
# Config and the combined loss
# --------------------------------------------------------------------------------------------


def test_loss_config_validation_and_presets() -> None:
    with pytest.raises(ValueError):
        LossConfig(loss="reinforce")
    with pytest.raises(ValueError):
        LossConfig(aggregation="seq")
    with pytest.raises(ValueError):
        LossConfig(loss="ppo_clip", eps_low=None)
    with pytest.raises(ValueError):
        LossConfig(kl_beta=-0.1)
    assert LossConfig.grpo().eps_high == 0.2 and LossConfig.grpo().aggregation == "sequence"
    assert (LossConfig.dapo().eps_low, LossConfig.dapo().eps_high) == (0.2, 0.28)
    s = LossConfig.scalerl()
    assert (s.loss, s.aggregation, s.batch_norm, s.std_normalize, s.eps_low) == (
        "cispo", "prompt", True, False, None)


def test_policy_loss_ppo_with_kl() -> None:
    logp, old = ppo_inputs()
    ref = logp.detach() + LN2
    ref[:, 3] = NAN  # padding in the reference is ignored
    cfg = LossConfig(loss="ppo_clip", aggregation="token", eps_low=0.2, eps_high=0.28, kl_beta=0.1)
    loss, stats = policy_loss(cfg, logp, old, ADV, MASK, group_size=2, ref_logp=ref)
    # pg = (-1 - 1.28 - .5 + 2 + 3 + 1.6) / 6 = 3.82/6 = 0.6366666666666667
    # kl = k3(ln2) = 0.3068528194400547 on every token; loss = pg + .1 * kl = 0.6673519486106722
    assert loss.item() == pytest.approx(0.6673519486106722, rel=1e-6)
    assert stats["pg_loss"] == pytest.approx(0.6366666666666667, rel=1e-6)
    assert stats["kl"] == pytest.approx(0.3068528194400547, rel=1e-6)
    assert stats["loss"] == pytest.approx(0.6673519486106722, rel=1e-6)
    assert stats["clip_frac_low"] == pytest.approx(1 / 6)
    assert stats["clip_frac_high"] == pytest.approx(1 / 6)
    assert stats["ratio_mean"] == pytest.approx(1.0)
    loss.backward()
    assert logp.grad is not None and finite(logp.grad)
    # kl gradient: .1 * (1 - exp(ln2)) / 6 = -1/60 added to each response token's PPO gradient/6
    # token (0,0): -1/6 - 1/60 = -0.18333333333333332
    assert logp.grad[0, 0].item() == pytest.approx(-0.18333333333333332, rel=1e-5)
    assert logp.grad[0, 3].item() == 0.0


def test_policy_loss_kl_is_reported_but_not_added_when_beta_is_zero() -> None:
    logp, old = ppo_inputs()
    cfg = LossConfig(kl_beta=0.0)
    loss, stats = policy_loss(cfg, logp, old, ADV, MASK, group_size=2, ref_logp=logp.detach() + LN2)
    assert loss.item() == pytest.approx(0.6366666666666667, rel=1e-6)
    assert stats["kl"] == pytest.approx(0.3068528194400547, rel=1e-6)
    _, no_ref = policy_loss(cfg, logp, old, ADV, MASK, group_size=2)
    assert "kl" not in no_ref


def test_policy_loss_cispo_prompt_level_with_grouped_advantages() -> None:
    logp, old = cispo_inputs()
    adv = torch.tensor([[2.0, -1.0]], dtype=torch.float64)  # [P=1, G=2], flattened inside
    cfg = LossConfig(loss="cispo", aggregation="prompt", eps_low=None, eps_high=0.28)
    loss, stats = policy_loss(cfg, logp, old, adv, CISPO_MASK, group_size=2)
    # one prompt, 7 tokens: (1.6931471805599453 + 4 + 0.24200932324309915 + 2.0655432177665403
    #   - 0.8465735902799727 - 2 - 0.12100466162154957) / 7 = 5.033121469668063 / 7
    assert loss.item() == pytest.approx(0.7190173528097233, rel=1e-9)
    assert stats["clip_frac_high"] == pytest.approx(3 / 7)


def test_compute_advantages_scalerl_with_zero_variance_filter() -> None:
    keep = zero_variance_mask(REWARDS)
    adv = compute_advantages(LossConfig.scalerl(), REWARDS, keep)
    # centred kept groups [.5,-.5,-.5,.5] and [-.25,-.25,-.25,.75]: mean 0,
    # var (4*.25 + 3*.0625 + .5625)/8 = .21875, std 0.46770717334674267
    # .5/std = 1.0690449676496976, -.25/std = -0.5345224838248488, .75/std = 1.6035674514745464
    a, b, c = 1.0690449676496976, -0.5345224838248488, 1.6035674514745464
    close(adv, [[a, -a, -a, a], [0.0] * 4, [b, b, b, c]], tol=1e-5)
    # GRPO defaults: group std, no batch pass; the filter still zeroes dropped prompts
    grpo = compute_advantages(LossConfig.grpo(), REWARDS, torch.tensor([False, True, True]))
    assert torch.equal(grpo[0], torch.zeros(4))
    close(grpo[2], [-0.5773502691896258] * 3 + [1.7320508075688772], tol=1e-5)
