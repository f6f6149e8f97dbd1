"""The RL training loop: GRPO / DAPO / ScaleRL on a verifiable task, readable top to bottom.

``train(spec, run_dir, rank=..., world_size=...)`` is what every worker runs (a Ray Train worker,
a ``torch.distributed`` process, or the only process): it builds a ``Trainer`` and calls ``fit``.

``Trainer.__init__`` sets a rank up from the spec's ``TrainConfig`` (runner.config): the seed, the
device, the policy with its FP32 head, FSDP2 and frozen reference (runner.policy, runner.parallel),
AdamW, the prompts (runner.data), the controllers, the state and the checkpointer.

``Trainer.fit`` then, inside the event stream (rank 0 writes events.jsonl):

1. records the run's start and resumes from the latest verified checkpoint, if there is one (a
   new attempt; runner.checkpointer);
2. runs the optional supervised warm start (runner.warm_start), so a random tiny model has a
   non-zero pass rate before RL;
3. validates (greedy decoding on the val split, runner.evaluate) and checkpoints step 0;
4. runs RL steps (``train_step``): sample G completions per prompt, score them, shape and
   normalize the rewards into advantages, filter, then the policy loss (runner.rollout), backward,
   clip, and step unless the stability guard says not to; ``algorithm.updates_per_batch`` more
   clipped updates on the same rollouts;
5. after each step, acts on the controllers' one Decision (runner.controllers: roll back to the
   last good checkpoint with a lower learning rate, stop early, grow the batch), validates every
   ``eval_interval`` steps and checkpoints every ``save_interval`` steps and at the end.

The automatic decisions are those of docs/reference.md sections 4-6. The algorithm pieces
themselves live in ``runner.algo``; this file only wires them together.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from preflight.rundir import EVENTS_FILE
from preflight.spec import Spec

from .algo import PassRateTracker, finite, policy_loss
from .checkpoint import Committed, FaultHook
from .checkpointer import Checkpointer, previous_attempts, rejected_fields
from .config import TrainConfig
from .controllers import Controllers, Decision, Resize, Stop, Verdict, scaled_lr
from .data import PromptSampler, encode_prompts, load_rows
from .evaluate import Evaluator
from .events import EventWriter, Sink, make_sinks
from .metrics import DeviceMeter, Meter
from .parallel import (
    backend_name,
    barrier,
    device_name,
    mean_across,
    pick_device,
    sum_across,
    world,
)
from .policy import build_policy, prompt_budget
from .rewards import reward_for
from .rollout import (
    LossFn,
    Rollout,
    generate_in_chunks,
    policy_backward,
    reference_logprobs,
    score_groups,
)
from .state import TrainState, current_lr, set_lr
from .warm_start import warm_start

ZERO_VARIANCE = "every group had equal rewards (zero variance); no update"


@dataclass(frozen=True)
class Sampled:
    """A step's rollouts before the update: the completions, their rewards and advantages."""

    rows: list[dict[str, Any]]
    seqs: Tensor  # [B, P + T]
    attn: Tensor  # [B, P + T]
    mask: Tensor  # [B, T] completion tokens up to and including EOS
    truncated: Tensor  # [B]
    raw: Tensor  # [B] rewards
    adv: Tensor  # [B] advantages
    keep: Tensor  # [P] groups kept by the zero-variance filter
    loss_mask: Tensor  # [B, T] mask of the kept groups
    kept_world: float  # groups kept on every rank together
    data_s: float  # seconds spent picking and tokenizing the prompts


@dataclass(frozen=True)
class Update:
    """What the policy update on a step's rollouts did (NaN where it did not run)."""

    loss: float = float("nan")
    grad_norm: float = float("nan")
    entropy: float = float("nan")
    stats: tuple[float, float] = (0.0, 0.0)  # clip fractions, low and high
    skipped: str | None = None  # why the optimizer did not step
    rollback: str | None = None  # the stability guard's cause, when it asks for a rollback


@dataclass(frozen=True)
class StepResult:
    fields: dict[str, Any]  # the step event's fields
    rollback: str | None  # the stability guard's cause, when it asks for a rollback


class Trainer:
    """One rank's RL training run on the spec; ``fit()`` trains and returns the summary.

    Besides train()'s arguments it takes the seams tests use instead of patching globals: the
    ``reward`` (a ``runner.rewards.Reward``), ``loss_fn`` (``runner.algo.policy_loss`` or a planted
    one), a device ``meter``, the checkpoints' ``fault_hook`` and the ``clock``.
    """

    def __init__(self, spec: Spec, run_dir: Path | str, *, rank: int = 0, world_size: int = 1,
                 forced_reason: str | None = None, max_steps: int | None = None,
                 warm_start_steps: int | None = None, warm_start_lr: float | None = None,
                 val_limit: int | None = None, policy: tuple[Any, Any] | None = None,
                 sinks: list[Sink] | None = None, reward: Callable[..., list[float]] | None = None,
                 loss_fn: LossFn = policy_loss, meter: Meter | None = None,
                 fault_hook: FaultHook | None = None, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        started = clock()
        self.run_dir = Path(run_dir)
        self.rank, self.world_size = world(rank, world_size)
        config = TrainConfig.from_spec(spec, world_size=self.world_size, max_steps=max_steps,
                                       warm_start_steps=warm_start_steps, warm_start_lr=warm_start_lr,
                                       val_limit=val_limit)
        self.forced_reason, self.sinks, self.loss_fn = forced_reason, sinks, loss_fn
        self.notes: list[str] = []
        random.seed(config.seed + self.rank)
        torch.manual_seed(config.seed + self.rank)  # different samples per rank; weights come from the model's seed
        self.device = pick_device(config.uses_gpus, self.rank, self.notes)
        self.policy = build_policy(config, self.device, self.world_size, self.notes, given=policy)
        self.optimizer = torch.optim.AdamW(self.policy.model.parameters(), lr=config.lr, weight_decay=0.0)
        self.reward = reward if reward is not None else reward_for(spec)
        self._algorithm_notes(config)
        self.config = config = replace(config, max_prompt=prompt_budget(
            self.policy.model, config.max_prompt, config.max_new, self.notes))
        self._set_up_data(config)
        self.controllers = Controllers(
            stability=config.stability, early_stopping=config.early_stopping,
            dynamic_batch=config.dynamic_batch, checkpoint_metric=config.checkpoints.metric,
            batch_size=config.batch.batch_size, unit=config.batch.unit, notes=self.notes)
        self.state = TrainState(base_lr=config.lr, batch_size=config.batch.batch_size,
                                world_size=self.world_size, controllers=self.controllers, started=started)
        self.checkpointer = Checkpointer(config.checkpoints, model=self.policy.model,
                                         optimizer=self.optimizer, sampler=self.sampler, rank=self.rank,
                                         device=self.device, notes=self.notes, clock=clock,
                                         fault_hook=fault_hook)
        self.meter: Meter = meter if meter is not None else DeviceMeter(self.device)
        self.sink_warnings: list[str] = []
        self.events: EventWriter  # the run's event stream, open while fit() runs

    def _algorithm_notes(self, config: TrainConfig) -> None:
        if config.dynamic_sampling:
            self.notes.append("dynamic_sampling: zero-variance groups are dropped from the batch, "
                              "not redrawn")
        if config.shaping.overlong and config.max_new < config.shaping.buffer:
            self.notes.append(f"overlong_shaping: buffer cut to max_response_tokens={config.max_new}")

    def _set_up_data(self, config: TrainConfig) -> None:
        train_rows, val_rows = load_rows(config.data, self.policy.tokenizer, self.notes, config.max_prompt)
        self.data_sizes = (len(train_rows), len(val_rows))
        tracker = (PassRateTracker(config.positive_resampling)
                   if config.positive_resampling is not None else None)
        self.sampler = PromptSampler(train_rows, rank=self.rank, world_size=self.world_size,
                                     seed=config.seed, tracker=tracker)
        self.evaluator = Evaluator(val_rows, reward=self.reward, rank=self.rank,
                                   world_size=self.world_size, max_prompt=config.max_prompt,
                                   max_new=config.max_new, device=self.device)
        if self.policy.built_in and config.warm_start.steps <= 0:
            self.notes.append("warm start: none; the random tiny model starts RL from a pass rate near 0")

    # --- the run ---------------------------------------------------------------------------------

    def fit(self) -> dict[str, Any]:
        """Train to training.max_steps (or a stop); returns the summary. The event stream is closed
        however this ends, a raised exception included."""
        state, config = self.state, self.config
        # every start on a run dir that already has a run_start, and every rollback, is a new
        # attempt; step events carry it, so replayed steps are told apart
        state.attempt, previous_end = previous_attempts(self.run_dir) if self.rank == 0 else (0, None)
        with self._event_writer() as self.events, self.checkpointer.settled():
            self._emit_run_start()
            resumed = self.checkpointer.resume(state, previous_end, self.events)
            if resumed is None and config.warm_start.steps > 0:  # a checkpoint holds its effect
                self._warm_start()
            self._start_rl(resumed)
            while state.running and state.step < config.steps_total:
                state.step += 1
                result = self.train_step(state.step)
                due = state.step % config.eval_interval == 0 or state.step == config.steps_total
                val_rate = self._validate() if due and result.rollback is None else None
                decision = self.controllers.after_step(
                    state.step, result.fields, rollback=result.rollback, val_rate=val_rate,
                    last=state.step == config.steps_total)
                self._act(decision)
                self.checkpointer.poll(state)  # a background save that failed ends the run
            self.checkpointer.finish(state)  # the save in flight commits before the run ends
            rates = state.val_rates  # RL's gain, from the validation right after any warm start
            gain = ({"val_pass_rate_start": rates[0], "val_pass_rate_final": rates[max(rates)]}
                    if 0 in rates else {})
            self.events.emit("run_end", step=state.step, status=state.status,
                             reason=state.end_reason, **gain)
        barrier()
        return self._summary(resumed)

    def _event_writer(self) -> EventWriter:
        """Rank 0's event stream, with the given sinks or monitoring.sinks (the warnings about
        those that could not be made go into run_start)."""
        sinks = self.sinks
        if sinks is None and self.rank == 0:
            sinks, self.sink_warnings = make_sinks(self.config.sinks, self.run_dir, self.config.wandb)
        return EventWriter(self.run_dir, rank=self.rank, sinks=sinks)

    def _emit_run_start(self) -> None:
        config = self.config
        start: dict[str, Any] = dict(
            run=config.run_name, spec_sha256=config.spec_sha256, world_size=self.world_size,
            backend=backend_name(), device=device_name(self.device),
            config=config.run_start_record(*self.data_sizes), notes=self.notes,
            warnings=self.sink_warnings, spec_path=config.spec_path)
        if self.forced_reason is not None:
            start.update(forced=True, reason=self.forced_reason)
        self.events.emit("run_start", **start)

    def _warm_start(self) -> None:
        settings = self.config.warm_start
        self.events.emit("phase", name="warm_start", step=0, steps=settings.steps, lr=settings.lr)
        done = warm_start(self.policy.model, self.policy.tokenizer, settings, sampler=self.sampler,
                          batch=self._prompts_per_rank() * self.config.batch.group,
                          max_prompt=self.config.max_prompt, grad_clip=self.config.grad_clip,
                          micro=self.config.batch.micro,
                          device=self.device, pass_rate=lambda: self._pass_rate()[0])
        target = ({} if settings.target is None else
                  {"warm_start_target": settings.target, "target_reached": done.reached is not None})
        self.events.emit("phase", name="rl", step=0, warm_start_steps_done=done.steps_done, **target)

    def _start_rl(self, resumed: Committed | None) -> None:
        """Before the first RL step: a stop an early-stopped checkpoint recorded stands; a fresh
        run validates and checkpoints step 0, the state every rollback can reach."""
        stop = self.controllers.stopped_already()
        if stop is not None and self.state.step < self.config.steps_total:
            self.state.end(stop.status, stop.reason)
        if resumed is None:
            self.controllers.start(self._validate())
            self.checkpointer.save(self.state, self.events)  # a failed save ends the run

    # --- one RL step -----------------------------------------------------------------------------

    def train_step(self, step: int) -> StepResult:
        """Sample and score rollouts, update the policy on them, record the step event."""
        t0 = self.clock()
        sampled = self._sample(t0)
        update = self._update(sampled, step) if sampled.kept_world else Update(skipped=ZERO_VARIANCE)
        return StepResult(self._record(step, sampled, update, t0), update.rollback)

    def _sample(self, t0: float) -> Sampled:
        model, tokenizer, config = self.policy.model, self.policy.tokenizer, self.config
        group, max_new = config.batch.group, config.max_new
        model.eval()
        rows = self.sampler.next(self._prompts_per_rank())
        enc = encode_prompts(tokenizer, [r["prompt"] for r in rows], config.max_prompt, self.device)
        data_s = self.clock() - t0  # picking and tokenizing the prompts: the data pipeline's share
        seqs, mask, truncated = generate_in_chunks(model, tokenizer, enc, max_new_tokens=max_new,
                                                   temperature=config.temperature, repeat=group,
                                                   completions=config.batch.generation)
        texts = tokenizer.batch_decode(seqs[:, -mask.shape[1]:], skip_special_tokens=True)
        group_rows = [r for r in rows for _ in range(group)]
        raw = torch.tensor(self.reward([r["prompt"] for r in group_rows], texts, group_rows),
                           dtype=torch.float32, device=self.device)
        self.sampler.observe(rows, raw.view(len(rows), group))
        adv, keep = score_groups(config.shaping, config.loss, raw, mask.sum(dim=1), group, max_new)
        kept_world = sum_across([float(keep.sum())], self.device)[0]
        loss_mask = mask * keep.repeat_interleave(group).unsqueeze(1).float()
        attn = torch.cat([enc["attention_mask"].repeat_interleave(group, dim=0), mask.long()], dim=1)
        return Sampled(rows, seqs, attn, mask, truncated, raw, adv, keep, loss_mask, kept_world, data_s)

    def _update(self, s: Sampled, step: int) -> Update:
        """The policy loss, backward and (unless the guard says no) the optimizer step."""
        model, config, reference = self.policy.model, self.config, self.policy.reference
        n_new = s.mask.shape[1]
        micro = config.batch.micro
        ref_logp = reference_logprobs(reference, s.seqs, s.attn, n_new, micro) if reference is not None else None
        model.train()
        rollout = Rollout(s.seqs, s.attn, n_new, s.adv, s.loss_mask, config.batch.group, ref_logp)
        loss, stats, gn, old_logp, ent = policy_backward(model, self.optimizer, config.loss, rollout,
                                                         None, config.grad_clip, self.loss_fn, micro)
        assert ent is not None  # the first update on a rollout measures the entropy
        entropy = float((ent * s.mask).sum() / s.mask.sum().clamp(min=1))
        loss_value, grad_norm = float(loss.detach()), float(gn)
        # the guard must decide alike on every rank: it sees the world's mean loss (NaN when any
        # rank's is) and the global gradient norm
        verdict = self.controllers.check(mean_across({"loss": loss_value}, self.device)["loss"], grad_norm)
        self._report(verdict, step)
        if verdict.skip:
            self.optimizer.zero_grad(set_to_none=True)
        else:
            self.optimizer.step()
            stats = self._more_updates(rollout, old_logp, stats)
        return Update(loss_value, grad_norm, entropy, (stats["clip_frac_low"], stats["clip_frac_high"]),
                      skipped=verdict.cause if verdict.skip else None,
                      rollback=verdict.cause if verdict.rollback else None)

    def _report(self, verdict: Verdict, step: int) -> None:
        """The guard's alert and skipped update, as events."""
        factor = self.controllers.guard.lr_factor
        if verdict.alert:
            self.events.emit("alert", step=step, rule="loss_spike", message=verdict.cause,
                             severity="critical" if verdict.rollback else "warn",
                             action=("update skipped; rolling back to the last good checkpoint with "
                                     f"the learning rate x{factor:g}") if verdict.rollback else
                                    ("update applied; check the data and the learning rate, or set "
                                     "stability.spike_action: rollback"))
        if verdict.skip:
            self.events.emit("action", step=step, kind="skip_step",
                             cause=f"{verdict.cause}; optimizer step skipped")

    def _more_updates(self, rollout: Rollout, old_logp: Tensor,
                      stats: dict[str, float]) -> dict[str, float]:
        """GRPO's mu > 1: more updates on the same rollouts, now off-policy, so the clipped ratio
        against old_logp bounds how far they move the policy. Returns the last update's stats."""
        for _ in range(self.config.updates_per_batch - 1):
            loss, stats, extra, _, _ = policy_backward(self.policy.model, self.optimizer, self.config.loss,
                                                       rollout, old_logp, self.config.grad_clip, self.loss_fn,
                                                       self.config.batch.micro)
            if sum_across([0.0 if finite(loss.detach(), extra) else 1.0], self.device)[0]:
                self.optimizer.zero_grad(set_to_none=True)
                break  # a non-finite extra update is dropped; the first one stands
            self.optimizer.step()
        return stats

    def _record(self, step: int, s: Sampled, u: Update, t0: float) -> dict[str, Any]:
        """The step event: this step's metrics, averaged over the ranks."""
        if u.skipped is not None:
            self.state.skipped_steps += 1
        dt = max(self.clock() - t0, 1e-9)
        lengths = s.mask.sum(dim=1)
        trained_tokens = float(s.loss_mask.sum()) if s.kept_world else 0.0
        utilization = self.meter.utilization()
        metrics = mean_across({
            "loss": u.loss, "pass_rate": float(s.raw.mean()), "gen_len_mean": float(lengths.mean()),
            "truncation_rate": float(s.truncated.float().mean()), "grad_norm": u.grad_norm,
            "clip_frac_low": u.stats[0], "clip_frac_high": u.stats[1],
            "entropy": u.entropy, "tokens_per_s": (float(lengths.sum()) + trained_tokens) / dt,
            "utilization": float("nan") if utilization is None else utilization,
            "memory_gib": self.meter.memory_gib() or 0.0,
            "kept_groups": float(s.keep.float().mean()), "data_wait_frac": min(s.data_s / dt, 1.0),
        }, self.device)
        metrics["tokens_per_s"] *= self.world_size  # the world's throughput
        energy = self.meter.energy_j()
        if energy is not None:
            energy = sum_across([energy], self.device)[0]
        fields: dict[str, Any] = dict(
            step=step, **{k: v for k, v in metrics.items() if k != "kept_groups"},
            utilization_source=self.meter.source, lr=current_lr(self.optimizer),
            batch_size=self._prompts_per_rank() * self.world_size, energy_j=energy,
            device_hours=self.state.device_hours(self.clock()),
            kept_groups_frac=metrics["kept_groups"], attempt=self.state.attempt)
        if u.skipped is not None:
            fields["skipped"] = u.skipped
        self.events.emit("step", **fields)
        self.state.losses.append(u.loss)
        return fields

    # --- acting on the controllers' decision -----------------------------------------------------

    def _act(self, decision: Decision) -> None:
        """Roll back, stop, resize the batch, checkpoint: what the step's decision asks for."""
        state, step = self.state, self.state.step
        if decision.rollback is not None:
            self._roll_back(decision.rollback)
            return
        if decision.stop is not None:
            self._stop(decision.stop)
            if not decision.stop.save:
                return
        if decision.resize is not None:
            self._resize(decision.resize)
        periodic = step % self.config.checkpoints.save_interval == 0 and self.controllers.save_now()
        last = step == self.config.steps_total
        if periodic or last or not state.running:
            self.checkpointer.save(state, self.events)  # a failed save ends the run

    def _stop(self, stop: Stop) -> None:
        action = dict(stop.action)
        self.events.emit("action", step=self.state.step, kind=action.pop("kind"), cause=stop.reason,
                         **action)
        self.state.end(stop.status, stop.reason)

    def _roll_back(self, cause: str) -> None:
        """Back to the newest good checkpoint with a lower learning rate: a new attempt."""
        target, rejected = self.checkpointer.choose()
        if target is None:
            self._stop(Stop("failed", f"{cause}; no valid checkpoint to roll back to", {"kind": "stop"},
                            save=False))
            return
        carried = self.controllers.carry()
        self.checkpointer.restore(target, self.state)
        self.controllers.rolled_back(carried)
        set_lr(self.optimizer, self.state.lr())
        self.state.attempt += 1
        lr, guard = current_lr(self.optimizer), self.controllers.guard
        self.events.emit("action", step=self.state.step, kind="rollback",
                         cause=f"{cause}; learning rate x{guard.lr_factor:g} -> {lr:.3g}")
        self.events.emit("recovery", step=self.state.step, attempt=self.state.attempt,
                         from_checkpoint=str(target.path),
                         reason=f"stability rollback {guard.rollbacks}/{self.controllers.max_rollbacks}: "
                                f"{cause}", rejected=rejected_fields(rejected), lr=lr)

    def _resize(self, resize: Resize) -> None:
        state = self.state
        old, state.batch_size = state.batch_size, resize.new
        state.base_lr = scaled_lr(state.base_lr, old, resize.new, self.config.dynamic_batch.lr_scaling)
        set_lr(self.optimizer, state.lr())
        self.events.emit("batch_size", step=state.step, old=old, new=resize.new, unit="completions",
                         efficiency=resize.efficiency, lr=current_lr(self.optimizer), reason=resize.reason)

    # --- validation and the summary --------------------------------------------------------------

    def _validate(self) -> float:
        """The validation pass rate at this step, recorded and logged."""
        rate, n = self._pass_rate()
        step = self.state.step
        self.events.emit("validation", step=step, pass_rate=rate, n=n,
                         device_hours=self.state.device_hours(self.clock()))
        self.state.val_rates[step] = rate
        return rate

    def _pass_rate(self) -> tuple[float, int]:
        chunk = self._prompts_per_rank() * self.config.batch.group
        if self.config.batch.generation is not None:  # the rollout's bound on completions in flight
            chunk = min(chunk, self.config.batch.generation)
        return self.evaluator.pass_rate(self.policy.model, self.policy.tokenizer, chunk)

    def _prompts_per_rank(self) -> int:
        return self.config.batch.prompts_for(self.state.batch_size)

    def _summary(self, resumed: Committed | None) -> dict[str, Any]:
        state, rates = self.state, self.state.val_rates
        return {
            "status": state.status, "reason": state.end_reason, "steps": state.step,
            "skipped_steps": state.skipped_steps, "losses": state.losses, "validation": rates,
            "val_pass_rate_start": rates.get(0),
            "val_pass_rate_final": rates[max(rates)] if rates else None,
            "world_size": self.world_size, "attempt": state.attempt,
            "resumed_from": str(resumed.path) if resumed is not None else None,
            "device": device_name(self.device), "notes": self.notes,
            "seconds": self.clock() - state.started, "events": str(self.run_dir / EVENTS_FILE),
        }


def train(spec: Spec, run_dir: Path, *, rank: int = 0, world_size: int = 1,
          forced_reason: str | None = None, max_steps: int | None = None,
          warm_start_steps: int | None = None, warm_start_lr: float | None = None,
          val_limit: int | None = None,
          policy: tuple[Any, Any] | None = None, sinks: list[Any] | None = None) -> dict[str, Any]:
    """Train the spec's policy with RL; returns a summary (steps, validation pass rates, ...).

    rank / world_size: this worker's place; when torch.distributed is initialized they are taken
    from it. max_steps overrides training.max_steps. warm_start_steps / warm_start_lr override
    training.warm_start_steps / training.warm_start_lr: steps > 0 run a supervised warm start
    (prompt + " " + answer, at that lr) before RL. val_limit overrides training.val_prompts.
    policy: a (model, tokenizer) pair to train instead of loading model.name_or_path (tests, the
    algo.smoke check). sinks: extra metric sinks instead of monitoring.sinks.
    """
    return Trainer(spec, run_dir, rank=rank, world_size=world_size, forced_reason=forced_reason,
                   max_steps=max_steps, warm_start_steps=warm_start_steps, warm_start_lr=warm_start_lr,
                   val_limit=val_limit, policy=policy, sinks=sinks).fit()
