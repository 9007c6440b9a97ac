"""The tiny face base: a tiny SD 1.x-shaped pipeline that has learned to draw the face world.

`avatar demo` and the learning test (test/python/trainer/test_learning.py) train a LoRA on it, so
that what a LoRA learns is visible: the random tiny kit (`avatar_trainer.tiny`) draws noise.
The weights ship with the trainer (`avatar_trainer/face_base/`, fp16 safetensors) and are
rebuilt, bit for bit, by one command (single CPU thread, deterministic algorithms, fixed seeds):

    PYTHONPATH=templates/trainer python -m avatar_trainer.tiny_faces build --out /tmp/face-base

It prints the sha256 of every file and compares them with `face_base/SHA256SUMS` (exit 1 when
they differ: another torch build or CPU kind can round differently). `--quick N` runs every
stage for N steps only (a determinism check, not a usable model). The demo's photos:

    python -m avatar_trainer.tiny_faces selfies --out DIR [--count 10] [--seed 7] [--size 512]

What is trained (all from `face_world`, 64 px images with random partial captions):

1. **VAE.** An `AutoencoderKL` whose two outer stages are fixed, not learned: the encoder
   box-filters 256 px down to 64 px, the decoder upsamples 64 px by 4 (nearest). The middle
   learns 64 px <-> 16x16x8 latents. So the pipeline renders 256 px images (the serving minimum;
   a 16x16 latent grid) while everything learned works at the world's native 64 px.
2. **Text encoder + UNet**, together: a CLIP text model whose tokenizer has one token per world
   word (the byte-level vocabulary of the tiny kit plus merges), and a UNet with cross-attention
   at 8x8 and 4x4, trained on noise prediction with 10% empty captions (for guidance). The saved
   UNet and text encoder are an exponential moving average of the trained ones.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from . import face_world
from .tiny import BOS, EOS, TINY_MARKER, _byte_unicode_chars

HERE = Path(__file__).resolve().parent
SHIPPED_DIR = HERE / "face_base"  # the shipped weights (not part of the Vertex trainer upload: *.py only)
SUMS_FILE = "SHA256SUMS"

NATIVE_SIZE = 64  # what the world is drawn at and what the learned parts see
SIZE = 256  # what the pipeline renders (the serving minimum): NATIVE_SIZE x 4, nearest
FIXED_STAGES = 2  # VAE stages that only box-filter (encoder) / upsample (decoder): 2 = x4
VAE_CHANNELS = (16, 16, 16, 32, 64)  # the first FIXED_STAGES carry RGB (+ zeros) only
VAE_NORM_GROUPS = 4
LATENT_CHANNELS = 8
LATENT_SIZE = SIZE // 2 ** (len(VAE_CHANNELS) - 1)  # 16
MAX_TOKENS = 48  # captions are at most ~40 tokens
TEXT_VOCAB_SIZE = 1000
TEXT_HIDDEN = 64


@dataclass(frozen=True)
class Recipe:
    """Everything that decides the weights (with the library versions and the CPU's arithmetic)."""

    seed: int = 0
    images: int = 20000
    vae_steps: int = 1800
    vae_batch: int = 16
    vae_crop: int = 32  # VAE steps on random 32 px crops (4x cheaper), the last vae_full_steps on whole images
    vae_full_steps: int = 300
    vae_lr: float = 3e-3
    unet_steps: int = 3000
    unet_batch: int = 32
    unet_lr: float = 1e-3
    te_lr: float = 3e-4
    caption_dropout: float = 0.1
    caption_keep: float = 0.6  # each attribute is named with this probability
    text_steps: int = 400  # the text encoder alone first, on naming what a caption names
    text_batch: int = 128
    text_aux: float = 0.1  # and that task's weight beside the UNet's loss afterwards
    ema: float = 0.999
    log_every: int = 100


QUICK = dict(images=64, vae_steps=3, vae_full_steps=1, vae_batch=4, text_steps=3, text_batch=4, unet_steps=3, unet_batch=4,
             log_every=1)


# --- tokenizer ---------------------------------------------------------------------------------

def _bpe(word: str, ranks: dict) -> tuple[str, ...]:
    """CLIP's BPE on one word (same rule as transformers' CLIPTokenizer.bpe)."""
    w = tuple(word[:-1]) + (word[-1] + "</w>",)
    while len(w) > 1:
        best = min(zip(w, w[1:]), key=lambda p: ranks.get(p, math.inf))
        if best not in ranks:
            break
        out, i = [], 0
        while i < len(w):
            if i < len(w) - 1 and (w[i], w[i + 1]) == best:
                out.append(w[i] + w[i + 1])
                i += 2
            else:
                out.append(w[i])
                i += 1
        w = tuple(out)
    return w


def word_merges(words) -> list[tuple[str, str]]:
    """BPE merges that make every word one token: each word's pieces are joined left to right,
    appended after the existing merges, until no word splits (a new merge can split another)."""
    merges: list[tuple[str, str]] = []
    ranks: dict = {}
    for _ in range(20):
        changed = False
        for word in words:
            parts = _bpe(word, ranks) if len(word) > 1 else (word + "</w>",)
            joined = parts[0]
            for part in parts[1:]:
                if (joined, part) not in ranks:
                    ranks[(joined, part)] = len(merges)
                    merges.append((joined, part))
                    changed = True
                joined += part
        if not changed:
            return merges
    raise RuntimeError("word merges did not converge")


def write_face_tokenizer(directory: str | os.PathLike):
    """The tiny kit's byte-level CLIP vocabulary plus one token per face-world word; returns it."""
    from transformers import CLIPTokenizer

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    chars = _byte_unicode_chars()
    vocab: dict[str, int] = {}
    for token in [*chars, *(c + "</w>" for c in chars)]:
        vocab[token] = len(vocab)
    merges = word_merges(face_world.WORDS)
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    vocab[BOS] = len(vocab)
    vocab[EOS] = len(vocab)  # the highest id, as in the tiny kit (both CLIP pooling rules agree)
    (d / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (d / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    tok = CLIPTokenizer(vocab_file=str(d / "vocab.json"), merges_file=str(d / "merges.txt"),
                        model_max_length=MAX_TOKENS)
    split = [w for w in face_world.WORDS if len(tok.tokenize(w)) != 1]
    assert not split and len(vocab) <= TEXT_VOCAB_SIZE, (split, len(vocab))
    return tok


# --- models ------------------------------------------------------------------------------------

def new_vae():
    """The AutoencoderKL with its outer stages set to fixed box filtering / nearest upsampling."""
    import torch
    from diffusers import AutoencoderKL

    n = len(VAE_CHANNELS)
    vae = AutoencoderKL(
        block_out_channels=VAE_CHANNELS, in_channels=3, out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * n, up_block_types=["UpDecoderBlock2D"] * n,
        layers_per_block=1, norm_num_groups=VAE_NORM_GROUPS, latent_channels=LATENT_CHANNELS, sample_size=SIZE,
    )
    enc, dec = vae.encoder, vae.decoder
    with torch.no_grad():
        _pick(enc.conv_in, tap=(1, 1))  # RGB into channels 0-2, zeros elsewhere
        for block in enc.down_blocks[:FIXED_STAGES]:
            for r in block.resnets:
                _zero(r.conv2)  # a resnet with a zero last conv is the identity
            _pick(block.downsamplers[0].conv, tap=None)  # 2x2 box filter, stride 2
        last = len(dec.up_blocks) - FIXED_STAGES - 1  # the learned block whose upsampler is the first fixed step
        _pick(dec.up_blocks[last].upsamplers[0].conv, tap=(1, 1))
        for block in dec.up_blocks[last + 1:]:
            for r in block.resnets:
                _zero(r.conv2)  # identity (the first one keeps its learned 1x1 channel projection)
            if block.upsamplers:
                _pick(block.upsamplers[0].conv, tap=(1, 1))
    return vae


def _zero(conv) -> None:
    conv.weight.zero_()
    conv.bias.zero_()


def _pick(conv, tap) -> None:
    """Channel c to channel c: one tap (identity / nearest after upsampling) or a 2x2 box (tap None)."""
    _zero(conv)
    for c in range(min(conv.in_channels, conv.out_channels)):
        if tap is None:
            conv.weight[c, c, 0:2, 0:2] = 0.25
        else:
            conv.weight[c, c, tap[0], tap[1]] = 1.0


def _projection(vae):
    """The first fixed decoder resnet's 1x1 shortcut (learned: channels of the last learned block -> VAE_CHANNELS[0])."""
    block = vae.decoder.up_blocks[len(VAE_CHANNELS) - FIXED_STAGES]
    return block.resnets[0].conv_shortcut


def vae_learned_modules(vae) -> list:
    enc, dec = vae.encoder, vae.decoder
    last = len(dec.up_blocks) - FIXED_STAGES - 1
    mods = [*enc.down_blocks[FIXED_STAGES:], enc.mid_block, enc.conv_norm_out, enc.conv_out, vae.quant_conv,
            vae.post_quant_conv, dec.conv_in, dec.mid_block, *dec.up_blocks[:last], *dec.up_blocks[last].resnets,
            dec.conv_norm_out, dec.conv_out]
    projection = _projection(vae)
    return mods + ([projection] if projection is not None else [])


def encode_native(vae, x):
    """Posterior moments of 64 px images x (B, 3, 64, 64) in [-1, 1]: what vae.encode gives for
    the same images upsampled to 256 px, at 1/16 of the cost."""
    import torch.nn.functional as F

    enc = vae.encoder
    h = F.pad(x, (0, 0, 0, 0, 0, VAE_CHANNELS[0] - x.shape[1]))
    for block in enc.down_blocks[FIXED_STAGES:]:
        h = block(h)
    h = enc.conv_out(enc.conv_act(enc.conv_norm_out(enc.mid_block(h))))
    return vae.quant_conv(h)


def decode_native(vae, z):
    """64 px images from latents: vae.decode(z) is exactly these, upsampled 4x (nearest)."""
    import torch.nn.functional as F

    dec = vae.decoder
    last = len(dec.up_blocks) - FIXED_STAGES - 1
    h = dec.mid_block(dec.conv_in(vae.post_quant_conv(z)), None)
    for block in dec.up_blocks[:last]:
        h = block(h)
    for r in dec.up_blocks[last].resnets:
        h = r(h, None)
    projection = _projection(vae)
    if projection is not None:
        h = projection(h)
    h = dec.conv_act(dec.conv_norm_out(h))
    # conv_out's centre tap only: a 3x3 conv after nearest upsampling would see other neighbours.
    return F.conv2d(h, dec.conv_out.weight[:, :, 1:2, 1:2], dec.conv_out.bias)


def latent_stats(mean):
    """Per-channel mean and std (float64) of posterior means (N, C, H, W)."""
    return mean.double().mean(dim=(0, 2, 3)), mean.double().std(dim=(0, 2, 3)).clamp(min=1e-2)


def standardize_latents(vae, mean) -> None:
    """Fold a per-channel standardisation of the latents into quant_conv / post_quant_conv: the same
    function, but every latent channel has mean 0 and std 1 over the world (scaling_factor stays 1).
    `mean`: posterior means of the world, (N, C, H, W)."""
    import torch

    mu, sigma = latent_stats(mean)
    c = LATENT_CHANNELS
    with torch.no_grad():
        q, p = vae.quant_conv, vae.post_quant_conv  # 1x1 convs
        wq, bq = q.weight.double(), q.bias.double()
        wq[:c] /= sigma[:, None, None, None]
        bq[:c] = (bq[:c] - mu) / sigma
        bq[c:] -= 2 * torch.log(sigma)  # log-variance rows: the variance scales by 1/sigma^2
        wp, bp = p.weight.double(), p.bias.double()
        bp += (wp[:, :, 0, 0] @ mu)
        wp *= sigma[None, :, None, None]
        q.weight.copy_(wq), q.bias.copy_(bq), p.weight.copy_(wp), p.bias.copy_(bp)


def centre_tap_only(vae) -> None:
    """Keep only conv_out's centre tap (what decode_native trains), so vae.decode matches it."""
    import torch

    with torch.no_grad():
        w = vae.decoder.conv_out.weight
        centre = w[:, :, 1, 1].clone()
        w.zero_()
        w[:, :, 1, 1] = centre


def new_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=LATENT_SIZE, in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS,
        block_out_channels=(32, 64, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_HIDDEN, attention_head_dim=8, norm_num_groups=32,
        # The caption, attention-pooled, also joins the time embedding of every resnet: global traits
        # (background, hair and skin colour) are learned in a few thousand steps instead of not at all.
        addition_embed_type="text", addition_embed_type_num_heads=4,
    )


def new_text_encoder(tokenizer):
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        hidden_size=TEXT_HIDDEN, intermediate_size=4 * TEXT_HIDDEN, num_attention_heads=4, num_hidden_layers=2,
        vocab_size=TEXT_VOCAB_SIZE, max_position_embeddings=MAX_TOKENS, hidden_act="gelu", layer_norm_eps=1e-5,
    ))


# DDPM's linear betas, not SD 1.x's scaled_linear: at 16x16 latents SD's last step (alpha_bar
# 0.0047) leaves the image's average colour readable through the noise, so a model trained on it
# learns colour from that residue instead of from the caption, and samples from pure noise drift
# to the world's average colour. Here the last step keeps 4e-5 of the image.
BETAS = dict(beta_start=0.0001, beta_end=0.02, beta_schedule="linear", num_train_timesteps=1000,
             prediction_type="v_prediction")


def noise_schedulers():
    """(training DDPM, sampling DDIM from t=999 down, ending on the clean image)."""
    from diffusers import DDIMScheduler, DDPMScheduler

    return (DDPMScheduler(**BETAS, clip_sample=False),
            DDIMScheduler(**BETAS, clip_sample=False, set_alpha_to_one=True, steps_offset=1,
                          timestep_spacing="trailing"))


# --- pretraining -------------------------------------------------------------------------------

def _log(stage: str, step: int, total: int, loss: float, started: float, first: int = 0) -> None:
    it_s = (step - first) / max(time.time() - started, 1e-9)
    print(f"step={step}/{total} stage={stage} loss={loss:.4f} it_s={it_s:.2f} eta_s={(total - step) / it_s:.0f}",
          flush=True)


def _lr(base: float, step: int, total: int, warmup: int = 50) -> float:
    """Linear warmup, then cosine down to a tenth."""
    return base * min(1.0, (step + 1) / warmup) * (0.1 + 0.45 * (1 + math.cos(math.pi * step / total)))


def render_world(recipe: Recipe):
    """(images uint8 (N, 64, 64, 3), faces): the world's samples for this recipe's seed."""
    import numpy as np

    rng = random.Random(recipe.seed)
    faces, arrays = [], []
    for _ in range(recipe.images):
        f = face_world.random_face(rng)
        faces.append(f)
        arrays.append(np.asarray(face_world.training_image(f, NATIVE_SIZE, rng, supersample=2)))
    return np.stack(arrays), faces


def _pixels(images, idx):
    import torch

    return torch.from_numpy(images[idx.numpy()]).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def _dx(t):
    return t[..., :, 1:] - t[..., :, :-1]


def _dy(t):
    return t[..., 1:, :] - t[..., :-1, :]


def train_vae(vae, images, recipe: Recipe) -> None:
    import torch
    import torch.nn.functional as F

    params = [p for m in vae_learned_modules(vae) for p in m.parameters()]
    learned = {id(p) for p in params}
    for p in vae.parameters():
        p.requires_grad_(id(p) in learned)
    opt = torch.optim.AdamW(params, lr=recipe.vae_lr, weight_decay=0.0, foreach=True)
    g = torch.Generator().manual_seed(recipe.seed + 1)
    total, started, window = recipe.vae_steps, time.time(), []
    print(f"phase=vae steps={total} batch={recipe.vae_batch} params={sum(p.numel() for p in params)}", flush=True)
    for step in range(total):
        for group in opt.param_groups:
            group["lr"] = _lr(recipe.vae_lr, step, total)
        x = _pixels(images, torch.randint(0, len(images), (recipe.vae_batch,), generator=g))
        if step < total - recipe.vae_full_steps and recipe.vae_crop < NATIVE_SIZE:
            # A crop at a multiple of 4 px: the 16x16 latent grid stays aligned with the image.
            oy, ox = (torch.randint(0, (NATIVE_SIZE - recipe.vae_crop) // 4 + 1, (2,), generator=g) * 4).tolist()
            # contiguous: torch 2.3.1 crashes (segfault) in conv backward on the strided view
            x = x[:, :, oy:oy + recipe.vae_crop, ox:ox + recipe.vae_crop].contiguous()
        mean, logvar = encode_native(vae, x).chunk(2, dim=1)
        logvar = logvar.clamp(-30.0, 20.0)
        z = mean + torch.randn(mean.shape, generator=g) * (0.5 * logvar).exp()
        y = decode_native(vae, z)
        # Pixels, plus their horizontal and vertical differences: edges stay sharp.
        rec = (F.mse_loss(y, x) + 0.5 * (y - x).abs().mean()
               + (_dx(y) - _dx(x)).abs().mean() + (_dy(y) - _dy(x)).abs().mean())
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()
        loss = rec + 1e-4 * kl
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        window.append(float(rec))
        if (step + 1) % recipe.log_every == 0 or step + 1 == total:
            _log("vae", step + 1, total, sum(window) / len(window), started)
            window = []
    vae.requires_grad_(False)
    vae.eval()


def encode_world(vae, images, batch: int = 64):
    """Posterior (mean, std) of every image."""
    import torch

    means, stds = [], []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            mean, logvar = encode_native(vae, _pixels(images, torch.arange(i, min(i + batch, len(images))))).chunk(2, 1)
            means.append(mean)
            stds.append((0.5 * logvar.clamp(-30.0, 20.0)).exp())
    return torch.cat(means), torch.cat(stds)


class NamingHead:
    """The text encoder's auxiliary task: from its (position-averaged) output, say which value of
    every attribute the caption names, or that it names none. It makes the encoder's output carry
    each attribute (bound to its noun: teal *hair*, red *glasses*) before the UNet has learned to
    ask for it; without it the UNet learnt to read backgrounds only in the time this budget allows."""

    def __init__(self):
        import torch

        self.fields = list(face_world.NAMEABLE)
        self.sizes = [len(face_world.NAMEABLE[f]) + 1 for f in self.fields]  # + "not named"
        self.linear = torch.nn.Linear(TEXT_HIDDEN, sum(self.sizes))

    def targets(self, named: list[dict]):
        import torch

        rows = [[face_world.NAMEABLE[f].index(n[f]) + 1 if f in n else 0 for f in self.fields] for n in named]
        return torch.tensor(rows, dtype=torch.long)

    def loss(self, hidden, targets):
        import torch.nn.functional as F

        logits = self.linear(hidden.mean(dim=1)).split(self.sizes, dim=1)
        return sum(F.cross_entropy(lg, targets[:, i]) for i, lg in enumerate(logits)) / len(self.sizes)


def _captions(faces, idx, words: random.Random, recipe: Recipe) -> tuple[list[str], list[dict]]:
    captions, named = [], []
    for i in idx:
        if words.random() < recipe.caption_dropout:
            captions.append("")
            named.append({})
        else:
            text, said = face_world.caption_and_named(faces[i], words, recipe.caption_keep)
            captions.append(text)
            named.append(said)
    return captions, named


def _ids(tokenizer, captions):
    return tokenizer(captions, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt").input_ids


def train_text(text_encoder, tokenizer, head: NamingHead, faces, recipe: Recipe) -> None:
    """The text encoder (and the head) alone on the naming task: fast, and the UNet then starts
    from captions whose attributes are already told apart."""
    import torch

    text_encoder.train()
    params = list(text_encoder.parameters()) + list(head.linear.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0, foreach=True)
    g = torch.Generator().manual_seed(recipe.seed + 4)
    words = random.Random(recipe.seed + 5)
    total, started, window = recipe.text_steps, time.time(), []
    print(f"phase=text steps={total} batch={recipe.text_batch} params={sum(p.numel() for p in params)}", flush=True)
    for step in range(total):
        for group in opt.param_groups:
            group["lr"] = _lr(1e-3, step, total)
        idx = torch.randint(0, len(faces), (recipe.text_batch,), generator=g).tolist()
        captions, named = _captions(faces, idx, words, recipe)
        loss = head.loss(text_encoder(_ids(tokenizer, captions))[0], head.targets(named))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        window.append(float(loss))
        if (step + 1) % recipe.log_every == 0 or step + 1 == total:
            _log("text", step + 1, total, sum(window) / len(window), started)
            window = []


def train_unet(unet, text_encoder, tokenizer, latents, faces, recipe: Recipe, head: NamingHead | None = None):
    """Noise prediction on the world's latents with random partial captions; returns EMA copies."""
    import copy

    import torch
    import torch.nn.functional as F

    mean, std = latents
    train_sched, _ = noise_schedulers()
    models = [unet, text_encoder]
    for m in models:
        m.requires_grad_(True)
        m.train()
    params = [p for m in models for p in m.parameters()]
    ema_models = [copy.deepcopy(m).requires_grad_(False).eval() for m in models]
    ema_params = [p for m in ema_models for p in m.parameters()]
    # The text encoder learns 10x slower: at the UNet's rate its (0.02-scale) embeddings change
    # faster than the UNet can follow, and the UNet learns to ignore the caption instead.
    groups = [{"params": list(unet.parameters()), "base": recipe.unet_lr},
              {"params": list(text_encoder.parameters()) + (list(head.linear.parameters()) if head else []),
               "base": recipe.te_lr}]
    opt = torch.optim.AdamW(groups, lr=recipe.unet_lr, weight_decay=0.0, foreach=True)
    g = torch.Generator().manual_seed(recipe.seed + 2)
    words = random.Random(recipe.seed + 3)
    total, started, window = recipe.unet_steps, time.time(), []
    print(f"phase=unet steps={total} batch={recipe.unet_batch} params={sum(p.numel() for p in params)}", flush=True)
    for step in range(total):
        for group in opt.param_groups:
            group["lr"] = _lr(group["base"], step, total, warmup=100)
        idx = torch.randint(0, len(faces), (recipe.unet_batch,), generator=g)
        x0 = mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=g)
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, train_sched.config.num_train_timesteps, (len(idx),), generator=g)
        captions, named = _captions(faces, idx.tolist(), words, recipe)
        cond = text_encoder(_ids(tokenizer, captions))[0]
        pred = unet(train_sched.add_noise(x0, noise, t), t, encoder_hidden_states=cond).sample
        loss = F.mse_loss(pred, train_sched.get_velocity(x0, noise, t))
        if head is not None and recipe.text_aux:
            loss = loss + recipe.text_aux * head.loss(cond, head.targets(named))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        decay = min(recipe.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_mul_(ema_params, decay)
            torch._foreach_add_(ema_params, [p.detach() for p in params], alpha=1 - decay)
        window.append(float(loss))
        if (step + 1) % recipe.log_every == 0 or step + 1 == total:
            _log("unet", step + 1, total, sum(window) / len(window), started)
            window = []
    return ema_models


# --- build, save, check ------------------------------------------------------------------------

def deterministic(seed: int) -> None:
    """One thread, deterministic kernels, fixed seeds: the same weights on every run (same CPU kind)."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build(out: str | os.PathLike, recipe: Recipe) -> Path:
    """Pretrain every part from `recipe` and save the pipeline (fp16) into `out`."""
    import tempfile

    import torch
    from diffusers import StableDiffusionPipeline

    from .train import _quiet_libraries

    _quiet_libraries(False)
    deterministic(recipe.seed)
    out = Path(out).resolve()
    t0 = time.time()
    images, faces = render_world(recipe)
    print(f"phase=world images={len(images)} size={NATIVE_SIZE} seconds={time.time() - t0:.1f}", flush=True)

    torch.manual_seed(recipe.seed)
    vae = new_vae()
    train_vae(vae, images, recipe)
    centre_tap_only(vae)
    mean, std = encode_world(vae, images)
    mu, sigma = latent_stats(mean)
    standardize_latents(vae, mean)
    mean, std = ((mean.double() - mu[:, None, None]) / sigma[:, None, None]).float(), (std.double() / sigma[:, None, None]).float()
    vae.register_to_config(scaling_factor=1.0)

    with tempfile.TemporaryDirectory(prefix="avatar-face-tok-") as tok_dir:
        tokenizer = write_face_tokenizer(tok_dir)
        torch.manual_seed(recipe.seed + 10)
        unet = new_unet()
        text_encoder = new_text_encoder(tokenizer)
        head = NamingHead()
        train_text(text_encoder, tokenizer, head, faces, recipe)
        unet, text_encoder = train_unet(unet, text_encoder, tokenizer, (mean, std), faces, recipe, head)
        _, sampler = noise_schedulers()
        pipe = StableDiffusionPipeline(
            unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=sampler,
            safety_checker=None, feature_extractor=None, image_encoder=None, requires_safety_checker=False,
        )
        pipe.to(torch.float16)
        out.mkdir(parents=True, exist_ok=True)
        pipe.save_pretrained(str(out), safe_serialization=True)
    marker = {"avatar_tiny": True, "pipeline": "sd15", "seed": recipe.seed, "vae_scale_factor": SIZE // LATENT_SIZE,
              "default_size": SIZE, "face_base": True, "native_size": NATIVE_SIZE,
              "subject": "long teal hair and round red glasses (never together in the world)",
              "recipe": {k: v for k, v in vars(recipe).items()}}
    (out / TINY_MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    sums = file_sums(out)
    (out / SUMS_FILE).write_text("".join(f"{h}  {name}\n" for name, h in sums.items()), encoding="utf-8")
    print(f"phase=saved out={out} seconds={time.time() - t0:.1f}", flush=True)
    return out


def file_sums(directory: str | os.PathLike) -> dict[str, str]:
    """sha256 of every file of a pipeline directory (but SHA256SUMS itself), by relative path."""
    root = Path(directory)
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != SUMS_FILE}


def read_sums(path: Path) -> dict[str, str]:
    sums = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.strip()] = digest
    return sums


def combined_sum(sums: dict[str, str]) -> str:
    return hashlib.sha256("".join(f"{h}  {n}\n" for n, h in sorted(sums.items())).encode()).hexdigest()


# --- demo photos -------------------------------------------------------------------------------

def write_selfies(out: str | os.PathLike, count: int = 10, seed: int = 7, size: int = 512) -> list[Path]:
    """`count` JPEG photos of the demo subject (teal hair, red glasses) in varied poses and backgrounds."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for i, (image, _) in enumerate(face_world.subject_photos(seed, count, size)):
        path = out / f"selfie-{i + 1:02d}.jpg"
        image.save(path, format="JPEG", quality=92)
        files.append(path)
    return files


# --- command line ------------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m avatar_trainer.tiny_faces",
                                description="The tiny face base: rebuild it, or draw the demo subject's photos.")
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="pretrain the face base from its seed and compare with the shipped weights")
    b.add_argument("--out", required=True, help="output directory (a diffusers pipeline)")
    b.add_argument("--seed", type=int, default=Recipe.seed, help="seed (default 0: the shipped weights)")
    b.add_argument("--quick", type=int, metavar="N", default=None,
                   help="N steps per stage on a few images: a determinism check, not a usable model")
    s = sub.add_parser("selfies", help="write JPEG photos of the demo subject")
    s.add_argument("--out", required=True, help="output directory")
    s.add_argument("--count", type=int, default=10, help="number of photos (default 10)")
    s.add_argument("--seed", type=int, default=7, help="seed (default 7)")
    s.add_argument("--size", type=int, default=512, help="pixels (default 512)")
    return p.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    if args.command == "selfies":
        files = write_selfies(args.out, args.count, args.seed, args.size)
        print(f"selfies count={len(files)} out={Path(args.out).resolve()}", flush=True)
        return 0
    recipe = Recipe(seed=args.seed)
    if args.quick:
        recipe = replace(recipe, **{**QUICK, "vae_steps": args.quick, "unet_steps": args.quick})
    shipped = read_sums(SHIPPED_DIR / SUMS_FILE) if (SHIPPED_DIR / SUMS_FILE).is_file() else None
    out = build(args.out, recipe)
    sums = file_sums(out)
    for name, digest in sums.items():
        print(f"sha256 {digest} {name}", flush=True)
    print(f"sha256 all={combined_sum(sums)}", flush=True)
    if args.quick or args.seed != Recipe.seed or shipped is None:
        return 0
    differ = sorted(n for n in set(sums) | set(shipped) if sums.get(n) != shipped.get(n))
    if differ:
        print(f"check differs from the shipped face base: {', '.join(differ)}", flush=True)
        return 1
    print("check identical to the shipped face base", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
