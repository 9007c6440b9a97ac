"""The training run: data → base model → captions → (class images) → LoRA on the UNet → outputs.

DreamBooth-style LoRA as in the diffusers examples: frozen base model, LoRA adapters on the
UNet attention projections (to_q/to_k/to_v/to_out.0) via peft, noise-prediction MSE loss,
optional prior preservation, AdamW with a constant-with-warmup learning rate.
Single device, batch of one instance image (plus one class image with prior preservation).
"""

from __future__ import annotations

import gc
import json
import os
import random
import re
import signal
import time
from pathlib import Path

from . import __version__, checkpoints
from . import data as data_mod
from . import samples as samples_mod
from .captions import CACHE_NAME as CAPTIONS_CACHE
from .captions import apply_trigger, blip_captions, cached_captions, class_prompt, instance_prompt, save_captions
from .cli import DEFAULT_RESOLUTION
from .errors import Interrupted, TrainerError
from .log import emit, phase
from .masks import face_mask, weighted_mse
from .model import (base_is_local, build_inference_pipeline, detect_pipeline, encode_prompts, load_components,
                    resolve_base, time_ids)
from .paths import resolve_location

LORA_TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]
WEIGHTS_NAME = checkpoints.WEIGHTS_NAME
LATENT_CACHE_BUDGET = 1 << 30  # bytes of cached latents (mean + std) kept on the device
# Test hook: raise after this step's checkpoint, as if the VM had been preempted right there.
FAIL_AFTER_STEP_ENV = "AVATAR_TRAINER_FAIL_AFTER_STEP"
# Fingerprint values of checkpoints written before a key existed: what those runs trained with.
LEGACY_FINGERPRINT = {"mask_weight": 1.0}


def _quiet_libraries(verbose: bool) -> None:
    """No progress bars, no info chatter: stdout carries only our key=value lines."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if verbose:
        return
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def choose_precision(requested: str):
    """(device, mixed precision): bf16 needs compute capability >= 8 (L4 yes, T4 no); CPU is fp32.

    `torch.cuda.is_bf16_supported()` is not used: it also answers yes where bf16 is only emulated.
    """
    import torch

    if not torch.cuda.is_available():
        if requested in ("fp16", "bf16"):
            raise TrainerError(f"--mixed-precision {requested} needs a CUDA GPU and none is available (use auto or no)")
        return torch.device("cpu"), "no"
    bf16_ok = torch.cuda.get_device_capability()[0] >= 8
    if requested == "auto":
        return torch.device("cuda"), "bf16" if bf16_ok else "fp16"
    if requested == "bf16" and not bf16_ok:
        raise TrainerError(f"--mixed-precision bf16 is not supported on {torch.cuda.get_device_name()} (use fp16)")
    return torch.device("cuda"), requested


def _to_tensor(img):
    """PIL RGB → (1, 3, H, W) float32 in [-1, 1]."""
    import numpy as np
    import torch

    arr = np.asarray(img, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).contiguous()


class _Order:
    """Which image a step trains on: a fresh permutation per epoch, a pure function of the step.

    Being stateless, it needs nothing in the checkpoint to resume identically.
    """

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self._perms = n, seed, {}

    def __call__(self, step: int) -> int:
        import torch

        epoch, k = divmod(step, self.n)
        if epoch not in self._perms:
            self._perms = {epoch: torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + epoch))}
        return int(self._perms[epoch][k])


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _validate_base(base: str) -> str:
    """avatar.json's base_model: the hub id as given, or the absolute local directory."""
    if base_is_local(base):
        return str(Path(base).absolute())
    if re.fullmatch(r"[\w.-]+/[\w.-]+", base) or re.fullmatch(r"[\w.-]+", base):
        return base
    raise TrainerError(f"base model {base!r} is neither a local directory nor a Hugging Face Hub id")


def train(args) -> dict:
    restore: list = []  # undo process-wide settings on the way out (in-process callers keep theirs)
    try:
        return _train(args, restore)
    finally:
        for undo in reversed(restore):
            undo()


def _torch_threads(base_src: str, restore: list):
    """One intra-op thread for the tiny kit's models (marker `avatar-tiny.json`), else torch's default.

    Their ops are far too small to gain from threads, and on a busy machine OpenMP threads spin
    against each other: 10-20x slower steps measured with 2 threads under load. Real models keep
    torch's default, and an explicit OMP_NUM_THREADS always wins.
    """
    import torch

    from .tiny import is_tiny_model

    if base_is_local(base_src) and is_tiny_model(base_src) and not os.environ.get("OMP_NUM_THREADS"):
        before = torch.get_num_threads()
        if before != 1:
            torch.set_num_threads(1)
            restore.append(lambda: torch.set_num_threads(before))
    return torch.get_num_threads()


def _train(args, restore: list) -> dict:
    t_start = time.time()
    verbose = bool(args.verbose) or os.environ.get("AVATAR_DEBUG") == "1"

    # --- locations and data: cheap checks first, before any heavy import -------------------
    dataset_path = resolve_location(args.dataset, "dataset", must_exist=True)
    out_dir = resolve_location(args.output_dir, "output dir")
    ckpt_dir = resolve_location(args.checkpoint_dir, "checkpoint dir")
    base_model = _validate_base(args.base)
    base_src = base_model  # load from the absolute path when local
    revision = getattr(args, "base_revision", None)

    sources = data_mod.load_zip(dataset_path)
    dataset_sha = args.dataset_sha256 or data_mod.sha256_hint(dataset_path)
    with_face = sum(1 for s in sources if s.face_box is not None)
    phase("data", images=len(sources), captions=args.caption, flip=str(bool(args.flip)).lower(),
          faces=with_face, dataset=str(dataset_path))

    # A Hub base is pinned to one commit before anything is loaded (None: a local directory).
    base_ref = resolve_base(base_src, revision)
    kind = args.pipeline or detect_pipeline(base_ref)
    resolution = args.resolution or DEFAULT_RESOLUTION[kind]
    for d in (out_dir, ckpt_dir):
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise TrainerError(f"cannot create {d}: {e}") from None

    # --- base model ---------------------------------------------------------------------------
    _quiet_libraries(verbose)
    import numpy as np
    import torch
    import torch.nn.functional as F

    random.seed(args.seed)
    np.random.seed(args.seed % (2**32))
    torch.manual_seed(args.seed)
    device, mp = choose_precision(args.mixed_precision)
    threads = _torch_threads(base_src, restore)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # Ampere+ (L4): faster fp32 matmuls, no-op on T4
    weight_dtype = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[mp]
    # The stock SDXL VAE overflows in fp16 (NaN latents): keep it fp32 unless an fp16-safe VAE
    # was passed. It only encodes each image once, so fp32 costs little.
    vae_dtype = torch.float32 if (kind == "sdxl" and not args.vae) else weight_dtype
    comps = load_components(base_ref, kind, args.vae, device, weight_dtype, vae_dtype)
    phase("load", base=base_model, pipeline=kind, device=device.type,
          dtype={"no": "fp32", "fp16": "fp16", "bf16": "bf16"}[mp], resolution=resolution,
          threads=threads, revision=base_ref.revision or "none", variant=comps.variant or "none")
    autocast = (lambda: torch.autocast(device.type, dtype=weight_dtype)) if mp != "no" else None

    # --- captions -----------------------------------------------------------------------------
    crops = [data_mod.center_crop_resize(s.image, resolution, s.original_size, face_box=s.face_box) for s in sources]
    inst_prompt = instance_prompt(args.token, args.class_word)
    if args.caption == "blip":
        names = [s.name for s in sources]
        cache_key = {"caption_model": args.caption_model, "dataset_sha256": dataset_sha, "resolution": resolution}
        raw = cached_captions(ckpt_dir / CAPTIONS_CACHE, cache_key, names)
        reused = raw is not None
        if raw is None:
            cap_dtype = torch.float16 if device.type == "cuda" else torch.float32
            try:
                raw = blip_captions([c.image for c in crops], args.caption_model, device, cap_dtype)
            except OSError as e:
                raise TrainerError(f"cannot load caption model {args.caption_model}: {e}") from None
            save_captions(ckpt_dir / CAPTIONS_CACHE, cache_key, names, raw)
            gc.collect()
        prompts = [apply_trigger(r, args.token, args.class_word) for r in raw]
        phase("captions", model=args.caption_model, count=len(prompts), reused=str(reused).lower())
    else:
        prompts = [inst_prompt] * len(sources)
    captions = {s.name: p for s, p in zip(sources, prompts)}

    # --- prior preservation: class images from the base model, kept with the checkpoints ------
    class_images = []
    if args.prior_preservation:
        class_images = _class_images(args, comps, base_src, ckpt_dir / "class_images", resolution,
                                     device, autocast)

    # --- text conditioning, computed once (sample prompts too); then the text encoders go -------
    unique = sorted(set(prompts) | ({class_prompt(args.class_word)} if class_images else set()))
    cond = dict(zip(unique, encode_prompts(comps, unique, device)))
    samples_every = (samples_mod.auto_every(args.steps, args.checkpoint_every) if args.samples_every is None
                     else args.samples_every)
    sample_specs, sample_conds, uncond = [], [], None
    if samples_every:
        sample_specs = samples_mod.sample_specs(args.token, args.class_word)
        encoded = encode_prompts(comps, [s["prompt"] for s in sample_specs] + [""], device)
        sample_conds, uncond = encoded[:-1], encoded[-1]
        if kind == "sdxl":  # SDXL's pipelines use zeros for an empty negative prompt (force_zeros_for_empty_prompt)
            uncond = {k: torch.zeros_like(v) for k, v in uncond.items()}
    comps.text_encoders.clear()
    _free(device)

    # --- views (crop, flipped crop) and their latents ------------------------------------------
    views = []  # per instance image: [plain crop, mirrored crop (--flip)]
    for s, crop in zip(sources, crops):
        views.append([crop, data_mod.center_crop_resize(s.image, resolution, s.original_size, flip=True,
                                                        face_box=s.face_box)]
                     if args.flip else [crop])
    class_views = [data_mod.center_crop_resize(im, resolution, (resolution, resolution)) for im in class_images]
    n_views = sum(len(v) for v in views) + len(class_views)
    latent_side = resolution // (2 ** (len(comps.vae.config.block_out_channels) - 1))
    latent_px = latent_side ** 2
    cache_bytes = n_views * 2 * comps.vae.config.latent_channels * latent_px * 4
    cache = args.cache_latents == "yes" or (args.cache_latents == "auto" and cache_bytes <= LATENT_CACHE_BUDGET)
    vae_scale = comps.vae.config.scaling_factor
    vae_shift = getattr(comps.vae.config, "shift_factor", None) or 0.0

    def encode(prepared):
        """(mean, std) of the VAE posterior: sampled fresh each step, like the diffusers scripts."""
        with torch.no_grad():
            dist = comps.vae.encode(_to_tensor(prepared.image).to(device, vae_dtype)).latent_dist
        return dist.mean.float(), dist.std.float()

    if cache:
        latents = [[encode(v) for v in vs] for vs in views]
        class_latents = [encode(v) for v in class_views]
        if not samples_every:  # samples need the VAE to decode
            comps.vae = None  # no longer needed: frees ~300 MB (SDXL) of GPU memory
        _free(device)
    phase("cache", latents=n_views if cache else 0, mode="cached" if cache else "per-step")

    # --- face masks at latent resolution (instance views only; class images train unmasked) --------
    masking = args.mask_weight < 1.0 and with_face > 0
    masks = [[face_mask(v.face_box, resolution, latent_side, args.mask_weight).to(device)
              if masking and v.face_box is not None else None for v in vs] for vs in views]
    phase("masks", images=len(sources), masked=with_face if masking else 0, unmasked=len(sources) - (with_face if masking else 0),
          mask_weight=args.mask_weight, class_images=len(class_views))

    # --- LoRA on the UNet ------------------------------------------------------------------------
    from peft import LoraConfig

    unet = comps.unet
    unet.add_adapter(LoraConfig(r=args.rank, lora_alpha=args.rank, init_lora_weights="gaussian",
                                target_modules=LORA_TARGETS))
    trainable = [(n, p) for n, p in unet.named_parameters() if p.requires_grad]
    for _, p in trainable:  # LoRA weights train in fp32 even when the frozen base is fp16/bf16
        p.data = p.data.float()
    params = [p for _, p in trainable]
    if args.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    unet.train()

    optimizer, opt_name = _optimizer(params, args.lr, device)
    scaler = torch.cuda.amp.GradScaler() if mp == "fp16" else None
    sampler = None
    if samples_every:
        sample_steps = args.sample_steps or (samples_mod.TINY_STEPS if _is_tiny(base_src) else samples_mod.DEFAULT_STEPS)
        sampler = samples_mod.Sampler(kind, sample_specs, sample_conds, uncond, comps.vae, comps.noise_scheduler.config,
                                      resolution, sample_steps, device, autocast)
    gen = torch.Generator().manual_seed(args.seed)  # noise, timesteps, flips: saved in checkpoints

    # What a checkpoint must have been trained with to be resumed (steps may change: a restart
    # may ask for more). lr and seed shape every update, the caption model every prompt.
    fingerprint = {
        "base_model": base_model, "base_revision": base_ref.revision, "pipeline": kind, "rank": args.rank,
        "resolution": resolution, "dataset_sha256": dataset_sha, "captions": args.caption,
        "caption_model": args.caption_model if args.caption == "blip" else None, "token": args.token,
        "class_word": args.class_word, "prior_preservation": bool(args.prior_preservation),
        "flip": bool(args.flip), "lr": args.lr, "seed": args.seed, "mask_weight": args.mask_weight,
    }

    # --- resume --------------------------------------------------------------------------------
    start = 0
    found = checkpoints.latest(ckpt_dir)
    if found:
        state = checkpoints.load(found[1])
        saved = {**LEGACY_FINGERPRINT, **state["meta"].get("fingerprint", {})}
        mismatch = {k: (saved.get(k), v) for k, v in fingerprint.items() if saved.get(k) != v}
        if mismatch:
            detail = ", ".join(f"{k}: {a!r} vs {b!r}" for k, (a, b) in sorted(mismatch.items()))
            raise TrainerError(f"checkpoint dir {ckpt_dir} holds another run's checkpoints ({detail}); "
                               "use a fresh --checkpoint-dir")
        names = {n for n, _ in trainable}
        if set(state["lora"]) != names:
            raise TrainerError(f"checkpoint {found[1]} does not match the LoRA layout of this run")
        with torch.no_grad():
            for n, p in trainable:
                p.copy_(state["lora"][n].to(p.device, p.dtype))
        optimizer.load_state_dict(state["optimizer"]["optimizer"])
        if scaler is not None and state["optimizer"].get("scaler"):
            scaler.load_state_dict(state["optimizer"]["scaler"])
        _set_rng(state["rng"], gen, device)
        start = state["step"]
        phase("resume", step=start, path=str(found[1]))

    total = args.steps
    warmup = args.lr_warmup_steps if args.lr_warmup_steps is not None else min(100, total // 10)
    order = _Order(len(sources), args.seed)
    class_order = _Order(len(class_views), args.seed + 7919) if class_views else None
    nsched = comps.noise_scheduler
    n_train_t = nsched.config.num_train_timesteps
    prediction = nsched.config.prediction_type
    if prediction not in ("epsilon", "v_prediction"):
        raise TrainerError(f"unsupported scheduler prediction_type {prediction!r}")

    def sample_latent(mean_std):
        mean, std = mean_std
        noise = torch.randn(mean.shape, generator=gen).to(mean.device)
        return ((mean + std * noise) - vae_shift) * vae_scale

    def latent_for(prepared, cached):
        return sample_latent(cached if cache else encode(prepared))

    def train_step(step: int) -> float:
        i = order(step)
        v = int(torch.randint(0, len(views[i]), (1,), generator=gen)) if len(views[i]) > 1 else 0
        parts = [(latent_for(views[i][v], latents[i][v] if cache else None), cond[prompts[i]],
                  views[i][v])]
        if class_views:
            j = class_order(step)
            parts.append((latent_for(class_views[j], class_latents[j] if cache else None),
                          cond[class_prompt(args.class_word)], class_views[j]))
        x0 = torch.cat([p[0] for p in parts]).to(device)
        embeds = torch.cat([p[1]["embeds"] for p in parts]).to(device)
        noise = torch.randn(x0.shape, generator=gen).to(device)
        t = torch.randint(0, n_train_t, (x0.shape[0],), generator=gen).to(device)
        noisy = nsched.add_noise(x0, noise, t)
        target = noise if prediction == "epsilon" else nsched.get_velocity(x0, noise, t)
        kwargs = {}
        if kind == "sdxl":
            kwargs["added_cond_kwargs"] = {
                "text_embeds": torch.cat([p[1]["pooled"] for p in parts]).to(device),
                "time_ids": torch.cat([time_ids(p[2].original_size, p[2].crop_top_left, resolution)
                                       for p in parts]).to(device),
            }
        ctx = autocast() if autocast else _nullcontext()
        with ctx:
            pred = unet(noisy, t, encoder_hidden_states=embeds, return_dict=False, **kwargs)[0]
        pred, target = pred.float(), target.float()
        loss = weighted_mse(pred[:1], target[:1], masks[i][v])
        if class_views:
            loss = loss + args.prior_loss_weight * F.mse_loss(pred[1:], target[1:])
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
        if scaler is not None:
            scaler.step(optimizer)  # skips the update when fp16 gradients overflowed
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    def render_samples(step: int):
        """(specs, images), or None when a SIGTERM stopped the rendering."""
        t0 = time.time()
        if device.type == "cuda":  # room for the VAE decode at full resolution
            _free(device)
        images = sampler.render(unet, stop=lambda: bool(stop["signal"]))
        if device.type == "cuda":
            _free(device)
        if images is None:
            emit("samples", step=step, images=0, skipped="sigterm", seconds=f"{time.time() - t0:.2f}")
            return None
        emit("samples", step=step, images=len(images), seconds=f"{time.time() - t0:.2f}")
        return sample_specs, images

    def save_checkpoint(step: int, with_samples: bool) -> bool:
        """Write checkpoint `step`; True when it has samples."""
        samples = render_samples(step) if with_samples else None
        opt_state = {"optimizer": optimizer.state_dict(), "scaler": scaler.state_dict() if scaler else None}
        path = checkpoints.save(ckpt_dir, step, {n: p for n, p in trainable}, opt_state,
                                _get_rng(gen, device), {"fingerprint": fingerprint, "trainer_version": __version__,
                                                        "steps": total},
                                keep=args.keep_checkpoints, write_weights=lambda d: _export(unet, kind, d),
                                samples=samples)
        emit("checkpoint", step=step, path=str(path), samples=str(samples is not None).lower())
        return samples is not None

    # --- the loop --------------------------------------------------------------------------------
    stop = {"signal": None}
    previous = _install_sigterm(stop)
    phase("train", steps=total, start=start, optimizer=opt_name, lora_params=sum(p.numel() for p in params),
          warmup=warmup, checkpoint_every=args.checkpoint_every, samples_every=samples_every,
          sample_steps=sampler.steps if sampler else 0)
    fail_after = os.environ.get(FAIL_AFTER_STEP_ENV)
    bad_steps = 0
    train_t0 = time.time()
    win_t0, win_step, win_losses = time.time(), start, []
    try:
        for step in range(start, total):
            if stop["signal"] and step == start:
                raise Interrupted("stopped by SIGTERM before training started", 143)
            for g in optimizer.param_groups:
                g["lr"] = args.lr * min(1.0, (step + 1) / warmup) if warmup > 0 else args.lr
            loss = train_step(step)
            done = step + 1
            if loss != loss or loss in (float("inf"), float("-inf")):
                bad_steps += 1
                if scaler is None or bad_steps >= 10:
                    raise TrainerError(
                        f"loss is not finite at step {done} (try --mixed-precision no, a lower --lr, "
                        "or an fp16-safe --vae for SDXL)")
            else:
                bad_steps = 0
                win_losses.append(loss)
            if done % args.log_every == 0 or done == total:
                now = time.time()
                it_s = (done - win_step) / max(now - win_t0, 1e-9)
                mean = sum(win_losses) / len(win_losses) if win_losses else float("nan")
                emit(f"step={done}/{total} loss={mean:.4f} it_s={it_s:.2f} eta_s={(total - done) / it_s:.0f}")
                win_t0, win_step, win_losses = now, done, []
            # Samples at every samples_every-th step and at the last one; each such step is a checkpoint.
            # Not on a SIGTERM checkpoint: Spot gives ~30 s, too little for SDXL samples.
            sample_due = bool(samples_every) and (done % samples_every == 0 or done == total)
            preempted = bool(stop["signal"]) and done < total
            if done % args.checkpoint_every == 0 or done == total or sample_due or preempted:
                sampled = save_checkpoint(done, with_samples=sample_due and not preempted)
                if done == total and sample_due and not sampled:  # SIGTERM during the last samples
                    raise Interrupted(f"stopped by SIGTERM while rendering the samples of step {done}; "
                                      "checkpoint saved, restart to finish", 143)
            if stop["signal"] and done < total:
                raise Interrupted(f"stopped by SIGTERM at step {done}/{total}; checkpoint saved, "
                                  "restart to resume", 143)
            if fail_after and done == int(fail_after):
                raise TrainerError(f"{FAIL_AFTER_STEP_ENV}={fail_after}: simulated failure after step {done}")
        # Resumed at the last step whose samples a SIGTERM cut short: render them into that checkpoint.
        last = checkpoints.checkpoint_path(ckpt_dir, total)
        if sampler and start == total and not (last / samples_mod.SAMPLES_DIR / samples_mod.MANIFEST).is_file():
            rendered = render_samples(total)
            if rendered is None:
                raise Interrupted(f"stopped by SIGTERM while rendering the samples of step {total}; restart to finish", 143)
            checkpoints.write_samples(last / samples_mod.SAMPLES_DIR, total, *rendered)
    finally:
        _restore_sigterm(previous)
    train_seconds = time.time() - train_t0
    ran = total - start

    # --- outputs (atomic: weights, captions, then avatar.json last) ----------------------------
    _export(unet, kind, out_dir)
    _atomic_write_text(out_dir / "captions.json", json.dumps(captions, indent=2, ensure_ascii=False) + "\n")
    meta = {
        "schema": 1,
        "name": args.name,
        "run_id": args.run_id,
        "base_model": base_model,
        "base_revision": base_ref.revision,
        "pipeline": kind,
        "token": args.token,
        "class_word": args.class_word,
        "instance_prompt": inst_prompt,
        "resolution": resolution,
        "rank": args.rank,
        "steps": total,
        "dataset_sha256": dataset_sha,
        "trainer_version": __version__,
        "captions": args.caption,
        "flip": bool(args.flip),
        "mask_weight": args.mask_weight,
        "masked_images": with_face if masking else 0,
        "samples_every": samples_every,
    }
    _atomic_write_text(out_dir / "avatar.json", json.dumps(meta, indent=2) + "\n")
    seconds = time.time() - t_start
    emit("done", output=str(out_dir), seconds=f"{seconds:.2f}",
         s_per_step=f"{train_seconds / ran:.4f}" if ran else None)
    return {"output_dir": out_dir, "start_step": start, "steps": total, "seconds": seconds,
            "train_seconds": train_seconds, "captions": captions, "avatar": meta}


def _is_tiny(base_src: str) -> bool:
    from .tiny import is_tiny_model

    return base_is_local(base_src) and is_tiny_model(base_src)


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _free(device) -> None:
    gc.collect()
    if device.type == "cuda":
        import torch

        torch.cuda.empty_cache()


def _optimizer(params, lr, device):
    """8-bit AdamW (bitsandbytes) on CUDA, where it halves optimizer memory; torch AdamW otherwise.

    bitsandbytes is imported only on CUDA: on CPU-only machines it may be absent or broken.
    """
    import torch

    kw = dict(lr=lr, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)
    if device.type == "cuda":
        try:
            import bitsandbytes as bnb

            return bnb.optim.AdamW8bit(params, **kw), "adamw8bit"
        except Exception as e:  # noqa: BLE001 - fall back, but say so
            phase("optimizer", name="adamw", note=f"bitsandbytes unavailable: {type(e).__name__}")
    return torch.optim.AdamW(params, **kw), "adamw"


def _get_rng(gen, device) -> dict:
    import numpy as np
    import torch

    return {
        "generator": gen.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else None,
        "python": random.getstate(),
        "numpy": np.random.get_state(),
    }


def _set_rng(state: dict, gen, device) -> None:
    import numpy as np
    import torch

    gen.set_state(state["generator"])
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state.get("cuda"):
        torch.cuda.set_rng_state_all(state["cuda"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])


def _install_sigterm(stop: dict):
    """On SIGTERM (Spot preemption notice) finish the current step, checkpoint, exit 143."""
    def handler(signum, frame):
        stop["signal"] = signum

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (embedded use): keep default behaviour
        return None


def _restore_sigterm(previous) -> None:
    if previous is not None:
        try:
            signal.signal(signal.SIGTERM, previous)
        except ValueError:
            pass


def _class_images(args, comps, base_src, class_dir: Path, resolution: int, device, autocast):
    """Generate (or reuse) `--num-class-images` images of "a photo of {class_word}".

    Stored under the checkpoint dir, one file at a time (atomic), so a preempted job keeps
    the ones already made. Each image has its own seed: regeneration is reproducible.
    """
    import torch
    from PIL import Image

    class_dir.mkdir(parents=True, exist_ok=True)
    prompt = class_prompt(args.class_word)
    paths = [class_dir / f"class_{i:05d}.jpg" for i in range(args.num_class_images)]
    missing = [i for i, p in enumerate(paths) if not p.is_file()]
    if missing:
        pipe = build_inference_pipeline(comps, base_src)
        for i in missing:
            g = torch.Generator(device="cpu").manual_seed(args.seed + 100_000 + i)
            with torch.no_grad():
                ctx = autocast() if autocast else _nullcontext()
                with ctx:
                    lat = pipe(prompt, num_inference_steps=args.class_inference_steps, height=resolution,
                               width=resolution, generator=g, output_type="latent").images
                # Decode outside autocast in the VAE's own dtype (fp32 for the stock SDXL VAE).
                vae = comps.vae
                img = vae.decode(lat.to(vae.dtype) / vae.config.scaling_factor, return_dict=False)[0]
                pil = pipe.image_processor.postprocess(img.float(), output_type="pil")[0]
            tmp = paths[i].with_name(f".{paths[i].name}.tmp-{os.getpid()}")
            pil.save(tmp, format="JPEG", quality=95)
            os.replace(tmp, paths[i])
        del pipe
        _free(device)
    phase("class_images", count=len(paths), generated=len(missing), dir=str(class_dir))
    images = []
    for p in paths:
        with Image.open(p) as im:
            images.append(im.convert("RGB"))
    return images


def _export(unet, kind: str, out_dir: Path) -> Path:
    """Write the diffusers-format LoRA (`pipe.load_lora_weights(out_dir)`), atomically."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    layers = {k: v.detach().float().cpu().contiguous() for k, v in layers.items()}
    cls = StableDiffusionXLPipeline if kind == "sdxl" else StableDiffusionPipeline
    tmp_name = f".{WEIGHTS_NAME}.tmp-{os.getpid()}"
    cls.save_lora_weights(save_directory=str(out_dir), unet_lora_layers=layers, weight_name=tmp_name,
                          safe_serialization=True)
    final = out_dir / WEIGHTS_NAME
    os.replace(out_dir / tmp_name, final)
    return final
