"""The accelerate training loop shared by every objective (diffusion stages, GAN).

One loop: fetch micro-batches, look their captions up in the text-embedding cache, run each phase
of the objective (loss, backward, clip, optimizer and LR step), update the EMA, then log, sample
and checkpoint on schedule. Unchanged on CPU, one GPU, or `accelerate launch` on many.

Exactness of `--resume`: the data order is a function of (seed, epoch) (`training/data.py`), the
noise of step s is drawn from a generator seeded by (seed, s, rank), and optimizer, LR-scheduler
and EMA state are restored — so N steps straight equal N/2 + resume + N/2.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, broadcast_object_list

from imagegen.config import RunConfig, check_trainable, dump_config, save_config
from imagegen.nn.precision import resolve_mixed_precision
from imagegen.training import checkpoint as ckpt
from imagegen.training.build import build_objective, build_text_cache, build_train_dataset
from imagegen.training.data import DataPosition, ShardedBatchSampler, make_loader
from imagegen.training.ema import EMA
from imagegen.training.fast import StepGuard, adamw_options, compile_network, prepare_network
from imagegen.training.logs import RunLogger
from imagegen.training.progress import TrainProgress
from imagegen.training.resume import check_resumable, find_resume, new_run_dir, resume_candidates
from imagegen.utils.integrity import HASHES_KEY, hash_folder

log = logging.getLogger("imagegen.train")


class TrainingStopped(RuntimeError):
    """The run stopped on purpose (e.g. too many consecutive NaN/inf losses)."""


@dataclass
class TrainSummary:
    run_dir: Path
    step: int
    minutes: float
    images_per_second: float
    last_loss: float
    bad_steps: int
    checkpoint: Path | None
    sample_grid: Path | None

    def line(self) -> str:
        # NaN here means no step of this invocation was a log step (e.g. a short resume), not a
        # NaN loss: those are skipped and counted in bad_steps
        loss = "not logged" if math.isnan(self.last_loss) else f"{self.last_loss:.4f}"
        return (
            f"done: {self.step} steps in {self.minutes:.1f} min, {self.images_per_second:.1f} img/s, "
            f"last loss {loss}, {self.bad_steps} skipped steps; "
            f"checkpoint {self.checkpoint}; samples {self.sample_grid}"
        )


def _allow_new_precision(precision: str) -> None:
    """Let a second Trainer in one process use another precision than the first.

    accelerate keeps one process-wide AcceleratorState and refuses an Accelerator whose
    mixed_precision differs from the first one's; in a single, non-distributed process (a notebook
    training a CLIP in fp32 and then a decoder in bf16) that state is safe to clear. A launched
    multi-process run keeps it (its precision comes from the launcher anyway)."""
    from accelerate.state import AcceleratorState, DistributedType

    shared = AcceleratorState._shared_state
    if not shared or shared.get("_mixed_precision") in (None, precision):
        return
    if shared.get("distributed_type", DistributedType.NO) == DistributedType.NO:
        AcceleratorState._reset_state()


# ------------------------------------------------------------------------------------------------
# The trainer
# ------------------------------------------------------------------------------------------------


class Trainer:
    def __init__(self, cfg: RunConfig, resume: str | None = None):
        self.cfg = check_trainable(cfg)  # before any compute, also for configs built in code
        precision = resolve_mixed_precision(
            cfg.train.mixed_precision, "cuda" if torch.cuda.is_available() else "cpu"
        )
        _allow_new_precision(precision)
        self.accelerator = Accelerator(
            # with no GPU, several launched processes train on CPU with gloo (accelerate's MULTI_CPU)
            cpu=not torch.cuda.is_available(),
            mixed_precision=precision,
            step_scheduler_with_optimizer=False,  # one LR step per optimizer step, on every process
        )
        self.precision = self.accelerator.mixed_precision  # "auto" resolved for this machine
        self.run_dir, self.resume_from = self._resolve_run(resume)
        self.accelerator.project_configuration = ProjectConfiguration(project_dir=str(self.run_dir))
        self.is_main = self.accelerator.is_main_process
        self.bad_steps = 0
        self.consecutive_bad = 0

    # -- set-up --------------------------------------------------------------------------------

    def _resolve_run(self, resume: str | None) -> tuple[Path, Path | None]:
        if resume and self.accelerator.is_main_process:
            for run_dir in resume_candidates(self.cfg, resume):  # finish commits a kill interrupted
                ckpt.recover_interrupted(run_dir)
        self.accelerator.wait_for_everyone()
        found = find_resume(self.cfg, resume) if resume else None
        if resume == "latest" and found is None and self.accelerator.is_main_process:
            log.warning("--resume latest: no checkpoint of %r found; starting a new run", self.cfg.name)
        run_dir, checkpoint = found if found else (new_run_dir(self.cfg), None)
        shared = [str(run_dir), str(checkpoint) if checkpoint else ""]
        broadcast_object_list(shared)  # every process uses the main process's timestamped name
        return Path(shared[0]), Path(shared[1]) if shared[1] else None

    def setup(self) -> None:
        cfg, acc = self.cfg, self.accelerator
        if self.resume_from is not None:
            saved = json.loads(json.dumps(_read_yaml(self.resume_from / "config.yaml")))
            check_resumable(saved, cfg)
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            ckpt.recover_interrupted(self.run_dir)
            aside = ckpt.set_aside_newer(self.run_dir, self.resume_from) if self.resume_from else None
            if aside is not None:
                log.warning("resuming from %s: its newer checkpoints moved to %s", self.resume_from, aside)
            save_config(cfg, self.run_dir / "config.yaml")
        acc.wait_for_everyone()
        torch.manual_seed(cfg.train.seed)  # identical initial weights on every process
        self.dataset = build_train_dataset(cfg)
        self.text_cache = build_text_cache(cfg, self.dataset, acc)
        self.null_text = self.text_cache.lookup([""])
        self.objective = build_objective(cfg, self.text_cache.dim)
        self._build_optimizers()
        self.emas = {
            name: EMA(
                acc.unwrap_model(self.objective.networks[name]),
                max_decay,
                cfg.train.ema_inv_gamma,
                cfg.train.ema_power,
            )
            for name, max_decay in self.objective.ema_networks.items()
        }
        self.step, self.position = 0, DataPosition()
        if self.resume_from is not None:
            self._load(self.resume_from)
        sampler = ShardedBatchSampler(
            len(self.dataset),
            cfg.train.batch_size,
            cfg.train.seed,
            acc.process_index,
            acc.num_processes,
            start=self.position,
        )
        self.batches = iter(make_loader(self.dataset, sampler, cfg.data.num_workers))
        self.logger = RunLogger(self.run_dir, acc, cfg) if self.is_main else None

    def _build_optimizers(self) -> None:
        from diffusers.optimization import get_scheduler

        acc, train = self.accelerator, self.cfg.train
        nets, speed = self.objective.networks, self.cfg.speed
        for name in list(nets):
            prepared = prepare_network(nets[name], speed, self.precision, acc.device.type)
            nets[name] = compile_network(acc.prepare(prepared), speed)
        self.optimizers, self.schedulers, self.guards = {}, {}, {}
        for phase in self.objective.phases:
            spec = self.objective.phase_spec(phase)
            params = [p for p in nets[spec.module].parameters() if p.requires_grad]
            optimizer = torch.optim.AdamW(
                params,
                lr=spec.lr,
                betas=spec.betas,
                weight_decay=spec.weight_decay,
                **adamw_options(speed, acc.device),
            )
            reduce = (lambda t: acc.reduce(t, reduction="sum")) if acc.num_processes > 1 else None
            self.guards[phase] = StepGuard(acc.device, sync_free=speed.sync_free_step, reduce_sum=reduce)
            kind = "cosine" if train.lr_schedule == "cosine" else "constant_with_warmup"
            scheduler = get_scheduler(
                kind,
                optimizer,
                num_warmup_steps=train.warmup_steps,
                num_training_steps=max(train.max_steps, 1),
            )
            self.optimizers[phase], self.schedulers[phase] = acc.prepare(optimizer, scheduler)

    # -- checkpoints ---------------------------------------------------------------------------

    def save(self) -> Path | None:
        acc = self.accelerator
        tmp = ckpt.temporary_path(self.run_dir, self.step)
        if self.is_main:
            ckpt.make_empty_dir(tmp)
        acc.wait_for_everyone()
        acc.save_state(str(tmp / "state"))  # optimizer, LR scheduler, RNG, raw weights
        acc.wait_for_everyone()  # every process's files are on disk before they are hashed
        final = None
        if self.is_main:
            for name, ema in self.emas.items():
                folder = tmp / "ema" / name
                folder.mkdir(parents=True)
                _save_network(ema.refresh(), folder)
                ema.save(folder)
                if hasattr(self.objective, "save_extras"):  # e.g. the CLIP's tokenizer
                    self.objective.save_extras(name, folder)
            save_config(self.cfg, tmp / "config.yaml")
            state = {**self._trainer_state(), HASHES_KEY: hash_folder(tmp)}
            ckpt.write_json_atomic(tmp / "trainer.json", state)  # written last
            final = ckpt.commit(tmp, self.step, self.cfg.train.keep_last, self.run_dir)
        acc.wait_for_everyone()
        return final

    def _trainer_state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "position": self.position.to_dict(),
            "bad_steps": self.bad_steps,
            "ema_steps": {name: ema.step_count for name, ema in self.emas.items()},
            "text_identity": self.text_cache.identity,
            "num_processes": self.accelerator.num_processes,
            "batch_size": self.cfg.train.batch_size,
            "run_dir": str(self.run_dir.resolve()),  # pruning deletes only what this folder wrote
        }

    def _load(self, checkpoint: Path) -> None:
        state = ckpt.read_trainer_state(checkpoint)
        self.accelerator.load_state(str(checkpoint / "state"))
        for name, ema in self.emas.items():
            ema.load(checkpoint / "ema" / name, state["ema_steps"][name])
        self.step, self.bad_steps = state["step"], state["bad_steps"]
        self.position = DataPosition(**state["position"])
        if self.is_main:
            log.info("resumed from %s at step %d", checkpoint, self.step)

    # -- one step ------------------------------------------------------------------------------

    def _next_micro_batches(self) -> list[dict[str, Any]]:
        device = self.accelerator.device
        batches = []
        for _ in range(self.cfg.train.grad_accum_steps):
            batch = next(self.batches)
            batch["image"] = batch["image"].to(device, non_blocking=True)
            text = self.text_cache.lookup(batch["caption"]).to(device)
            batches.append({"batch": batch, "text": text})
            epoch = self.position.epoch
            self.position.advance(
                self.cfg.train.batch_size * self.accelerator.num_processes, len(self.dataset)
            )
            if self.position.epoch != epoch and hasattr(self.dataset, "set_epoch"):
                self.dataset.set_epoch(self.position.epoch)  # folder data: per-epoch skip report
        return batches

    def _generator(self) -> torch.Generator:
        seed = (self.cfg.train.seed * 1_000_003 + self.step * 7_919 + self.accelerator.process_index) % 2**63
        return torch.Generator(device=self.accelerator.device).manual_seed(seed)

    def _all_finite(self, value: torch.Tensor) -> bool:
        finite = torch.isfinite(value.detach().float()).all().float().reshape(1)
        if self.accelerator.num_processes > 1:
            finite = self.accelerator.reduce(finite, reduction="sum") / self.accelerator.num_processes
        return bool(finite.item() == 1.0)

    def _run_phase(
        self, phase: str, micro_batches, generator
    ) -> tuple[bool | torch.Tensor, dict[str, torch.Tensor]]:
        """Losses, backward, clipping and the optimizer step of one phase.

        Returns (ok, logs). With speed.sync_free_step, `ok` is the device flag "this step was
        applied" (1 - found_inf) and nothing is read on the host; otherwise a bool, False when a
        NaN/inf skipped the step.
        """
        acc, accum = self.accelerator, len(micro_batches)
        spec = self.objective.phase_spec(phase)
        network, optimizer = self.objective.networks[spec.module], self.optimizers[phase]
        guard, sync_free = self.guards[phase], self.cfg.speed.sync_free_step
        for name, other in self.objective.networks.items():  # only this phase's network learns
            other.requires_grad_(name == spec.module)
        logs: dict[str, torch.Tensor] = {}
        for i, micro in enumerate(micro_batches):
            with acc.no_sync(network) if i < accum - 1 else contextlib.nullcontext():
                with acc.autocast():
                    loss, parts = self.objective.loss(
                        phase, micro["batch"], micro["text"], self.null_text.to(acc.device), generator
                    )
                if sync_free:
                    guard.observe(loss)
                elif not self._all_finite(loss):
                    optimizer.zero_grad(set_to_none=True)
                    return False, logs
                acc.backward(loss / accum)
            for key, value in parts.items():
                logs[key] = logs.get(key, 0.0) + value.detach().float() / accum
        grad_norm = acc.clip_grad_norm_(network.parameters(), self.cfg.train.grad_clip or math.inf)
        if sync_free:
            if grad_norm is not None:
                guard.observe(torch.as_tensor(grad_norm))
            skipped = guard.step(optimizer)  # fused AdamW skips on the device flag
            self._after_step(phase)
            self.schedulers[phase].step()
            optimizer.zero_grad(set_to_none=True)
            return 1.0 - skipped, logs
        if grad_norm is not None and not self._all_finite(torch.as_tensor(grad_norm)):
            optimizer.zero_grad(set_to_none=True)
            return False, logs
        optimizer.step()
        self._after_step(phase)
        self.schedulers[phase].step()
        optimizer.zero_grad(set_to_none=True)
        return True, logs

    def _after_step(self, phase: str) -> None:
        """An objective's in-place fix-up after its optimizer step (CLIP: the logit_scale clamp)."""
        after_step = getattr(self.objective, "after_step", None)
        if after_step is not None:
            after_step(phase)

    def train_step(self) -> dict[str, torch.Tensor] | None:
        """One optimizer step of every phase; None when a NaN/inf skipped it."""
        micro_batches = self._next_micro_batches()
        generator, logs = self._generator(), {}
        applied = None  # sync-free: a device flag, 1.0 when every phase's step was applied
        for phase in self.objective.phases:
            ok, phase_logs = self._run_phase(phase, micro_batches, generator)
            if isinstance(ok, torch.Tensor):
                applied = ok if applied is None else applied * ok
            elif not ok:
                return None
            logs.update(
                {f"{phase}/{k}" if len(self.objective.phases) > 1 else k: v for k, v in phase_logs.items()}
            )
        for name, ema in self.emas.items():
            network = self.accelerator.unwrap_model(self.objective.networks[name])
            ema.update(network, skipped=None if applied is None else 1.0 - applied)
        return logs

    # -- the loop ------------------------------------------------------------------------------

    def _should_stop(self, started: float, stop_at: int | None) -> bool:
        if self.step >= self.cfg.train.max_steps or (stop_at is not None and self.step >= stop_at):
            return True
        if self.cfg.train.max_minutes <= 0:
            return False
        out_of_time = time.time() - started > 60 * self.cfg.train.max_minutes
        if self.accelerator.num_processes == 1:
            return out_of_time  # no device read: a GPU step queue is not drained every step
        flag = torch.tensor([float(out_of_time)], device=self.accelerator.device)
        return bool(self.accelerator.reduce(flag, reduction="sum").item() > 0)  # all stop at one step

    def sample_grid(self) -> Path | None:
        if not self.is_main:
            return None
        prompts = self.cfg.train.sample_prompts
        averaged = {name: ema.refresh() for name, ema in self.emas.items()}
        device = self.accelerator.device
        text = self.text_cache.lookup(prompts).to(device)
        generator = torch.Generator(device=device).manual_seed(self.cfg.train.seed)
        images = self.objective.sample(averaged, text, self.null_text.to(device), generator)
        return self.logger.write_grid(images, prompts, self.step)

    def fit(self, stop_at: int | None = None) -> TrainSummary:
        """Train until train.max_steps / train.max_minutes (or `stop_at`: as if killed right after
        the checkpoint of that step, without changing the LR schedule, which depends on max_steps)."""
        self.setup()
        cfg, acc = self.cfg, self.accelerator
        if self.is_main:
            print(dump_config(cfg), flush=True)
            print(f"run directory: {self.run_dir}", flush=True)
            chosen = f"mixed precision: {self.precision} (train.mixed_precision={cfg.train.mixed_precision})"
            print(chosen, flush=True)
        started, start_step = time.time(), self.step
        last_saved = self.step if self.resume_from is not None else -1
        grid, last_loss = None, float("nan")
        # steps or minutes, whichever limit will stop the run first (training/progress.py)
        bar = self.progress = TrainProgress(
            cfg.train.max_steps, cfg.train.max_minutes, self.step, disable=not self.is_main
        )
        while not self._should_stop(started, stop_at):
            logs = self.train_step()
            if logs is None:
                self._on_bad_step(last_saved)
                continue
            self.consecutive_bad = 0
            self.step += 1
            bar.update(self.step, time.time() - started)
            if self.step % cfg.train.log_every == 0 or self.step == 1:
                if cfg.speed.sync_free_step:
                    self._read_guards(last_saved)
                last_loss = self._log(logs, bar, started, start_step)
            if cfg.train.checkpoint_every and self.step % cfg.train.checkpoint_every == 0:
                self.save()
                last_saved = self.step
            if cfg.train.sample_every and self.step % cfg.train.sample_every == 0:
                grid = self.sample_grid()
        bar.close()
        final = self.save() if self.step != last_saved else ckpt.latest_checkpoint(self.run_dir)
        if cfg.train.sample_every:
            grid = self.sample_grid() if grid is None or self.step % cfg.train.sample_every else grid
        minutes = (time.time() - started) / 60
        images = (
            (self.step - start_step) * cfg.train.batch_size * cfg.train.grad_accum_steps * acc.num_processes
        )
        summary = TrainSummary(
            self.run_dir,
            self.step,
            minutes,
            images / max(minutes * 60, 1e-9),
            last_loss,
            self.bad_steps,
            final,
            grid,
        )
        if self.is_main:
            self.logger.close(summary.line())
            print(summary.line(), flush=True)
        acc.end_training()
        return summary

    def _log(self, logs, bar, started, start_step) -> float:
        values = {
            k: float(self.accelerator.reduce(v.reshape(1), reduction="mean").item()) for k, v in logs.items()
        }
        elapsed = max(time.time() - started, 1e-9)
        images = (self.step - start_step) * self.cfg.train.batch_size * self.cfg.train.grad_accum_steps
        values["images_per_second"] = images * self.accelerator.num_processes / elapsed
        values["lr"] = self.schedulers[self.objective.phases[-1]].get_last_lr()[0]
        for name, ema in self.emas.items():
            values[f"ema_decay/{name}"] = ema.decay(ema.step_count)
        values["bad_steps"] = float(self.bad_steps)
        if self.logger is not None:
            self.logger.scalars(values, self.step)
            bar.set_postfix(
                {
                    k: f"{v:.4g}"
                    for k, v in values.items()
                    if k in ("loss", "images_per_second") or k.endswith("/loss")
                }
            )
        return next((v for k, v in values.items() if k.endswith("loss")), float("nan"))

    def _read_guards(self, last_saved: int) -> None:
        """speed.sync_free_step: skipped steps are counted on the device; read them at log steps
        (the step counter advanced over them, as with GradScaler) and stop as _on_bad_step does."""
        counts = [guard.read() for guard in self.guards.values()]
        self.bad_steps = max(c["skipped"] for c in counts)
        self.consecutive_bad = max(c["consecutive"] for c in counts)
        if self.consecutive_bad >= self.cfg.train.max_bad_steps:
            self.consecutive_bad -= 1  # _on_bad_step counts the last one again
            self.bad_steps -= 1
            self._on_bad_step(last_saved)

    def _on_bad_step(self, last_saved: int) -> None:
        self.bad_steps += 1
        self.consecutive_bad += 1
        if self.is_main:
            log.warning(
                "non-finite loss or gradient at step %d: step skipped (%d in a row, %d in all)",
                self.step + 1,
                self.consecutive_bad,
                self.bad_steps,
            )
            if self.logger is not None:
                self.logger.scalars({"bad_steps": float(self.bad_steps)}, self.step)
        if self.consecutive_bad >= self.cfg.train.max_bad_steps:
            kept = ckpt.latest_checkpoint(self.run_dir)
            raise TrainingStopped(
                f"stopping: {self.consecutive_bad} consecutive steps had a NaN/inf loss or gradient "
                f"(train.max_bad_steps={self.cfg.train.max_bad_steps}); last good checkpoint kept: "
                f"{kept or 'none yet'}. Try a lower train.lr, train.mixed_precision=no or bf16, or a "
                f"smaller train.grad_clip."
            )


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(path.read_text())


def _save_network(network: torch.nn.Module, folder: Path) -> None:
    """diffusers ModelMixin networks use save_pretrained (safetensors + config.json)."""
    if hasattr(network, "save_pretrained"):
        network.save_pretrained(str(folder), safe_serialization=True)
    else:
        from imagegen.factory import save_network

        save_network(network, folder)


def train(cfg: RunConfig, resume: str | None = None) -> TrainSummary:
    """Train one run described by `cfg`; see docs/training.md."""
    return Trainer(cfg, resume=resume).fit()
