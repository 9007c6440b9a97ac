"""Sample images at checkpoints: a fixed set of prompts and seeds rendered with the LoRA as trained so far.

The CLI scores each checkpoint's samples for likeness (face identity against the training photos)
and registers the best one, so every sampled checkpoint must be rendered the same way: the same
four prompts, the same seeds, the same sampler and step count, at the training resolution.

Rendering must not change training: the UNet goes to eval mode under no_grad, the sampler draws
its noise from its own seeded generators (never the training generator), and the global RNG
states are restored afterwards, so a run with samples trains bit for bit like one without, and
a resumed run like an uninterrupted one.
"""

from __future__ import annotations

# kind, prompt template ({trigger} = "<token> <class word>"), seed. Fixed: comparable across
# checkpoints and runs. A close-up and a three-quarter view test identity from two angles, the
# style prompt whether the identity survives a style, the setting prompt whether it survives a
# scene unlike the training photos (an overfit LoRA pastes the training background back in).
SAMPLE_SET = (
    ("close-up", "a close-up portrait photo of {trigger}, looking at the camera, natural light", 1001),
    ("three-quarter", "a photo of {trigger}, three-quarter view, head and shoulders, looking to the side", 1002),
    ("style", "an oil painting portrait of {trigger}, visible brush strokes", 1003),
    ("setting", "a photo of {trigger} hiking in the mountains, upper body, daylight", 1004),
)
GUIDANCE = {"sd15": 7.0, "sdxl": 5.0}
DEFAULT_STEPS = 25  # DPM-Solver++ (2M): good faces at 20-25 steps
TINY_STEPS = 2  # the tiny test/demo models: noise either way, keep it fast
SAMPLES_DIR = "samples"
MANIFEST = "samples.json"


def sample_specs(token: str, class_word: str) -> list[dict]:
    """The four sample entries (file, prompt, seed, kind) as samples.json lists them."""
    trigger = f"{token} {class_word}"
    return [{"file": f"sample-{i}.png", "prompt": template.format(trigger=trigger), "seed": seed, "kind": kind}
            for i, (kind, template, seed) in enumerate(SAMPLE_SET)]


def auto_every(steps: int, checkpoint_every: int, wanted: int = 5) -> int:
    """A sample interval that gives about `wanted` sampled checkpoints (the last step always is one),
    rounded up to a multiple of the checkpoint interval so samples land on regular checkpoints."""
    raw = -(-steps // wanted)  # ceil
    return max(checkpoint_every, -(-raw // checkpoint_every) * checkpoint_every)


class Sampler:
    """Renders the sample set with the UNet as it is (LoRA included). Conditioning is encoded once,
    before the text encoders are freed; the VAE is kept for decoding."""

    def __init__(self, kind: str, specs: list[dict], conds: list[dict], uncond: dict, vae, scheduler_config,
                 resolution: int, steps: int, device, autocast):
        self.kind, self.specs, self.conds, self.uncond = kind, specs, conds, uncond
        self.vae, self.scheduler_config = vae, scheduler_config
        self.resolution, self.steps, self.device, self.autocast = resolution, steps, device, autocast
        self.guidance = GUIDANCE[kind]

    def render(self, unet, stop=lambda: False) -> list | None:
        """PIL images, one per spec, in order; None when `stop()` turns true on the way (SIGTERM:
        Spot gives ~30 s, and a user's Ctrl-C should not wait for four images)."""
        import torch

        cpu_rng = torch.get_rng_state()
        cuda_rng = torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None
        was_training = unet.training
        unet.eval()
        try:
            with torch.no_grad():
                images = []
                for spec, cond in zip(self.specs, self.conds):
                    image = self._one(unet, spec, cond, stop)
                    if image is None:
                        return None
                    images.append(image)
                return images
        finally:
            unet.train(was_training)
            torch.set_rng_state(cpu_rng)
            if cuda_rng is not None:
                torch.cuda.set_rng_state_all(cuda_rng)

    def _one(self, unet, spec: dict, cond: dict, stop):
        import numpy as np
        import torch
        from diffusers import DPMSolverMultistepScheduler
        from PIL import Image

        from .model import time_ids

        dev = self.device
        sched = DPMSolverMultistepScheduler.from_config(self.scheduler_config)
        sched.set_timesteps(self.steps, device=dev)
        factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        size = self.resolution // factor
        g = torch.Generator().manual_seed(spec["seed"])
        x = torch.randn((1, unet.config.in_channels, size, size), generator=g).to(dev) * sched.init_noise_sigma
        embeds = torch.cat([self.uncond["embeds"], cond["embeds"]]).to(dev)
        kwargs = {}
        if self.kind == "sdxl":
            ids = time_ids((self.resolution, self.resolution), (0, 0), self.resolution)
            kwargs["added_cond_kwargs"] = {"text_embeds": torch.cat([self.uncond["pooled"], cond["pooled"]]).to(dev),
                                           "time_ids": torch.cat([ids, ids]).to(dev)}
        for t in sched.timesteps:
            if stop():
                return None
            inp = sched.scale_model_input(torch.cat([x, x]), t)
            if self.autocast:
                with self.autocast():
                    out = unet(inp, t, encoder_hidden_states=embeds, return_dict=False, **kwargs)[0]
            else:
                out = unet(inp, t, encoder_hidden_states=embeds, return_dict=False, **kwargs)[0]
            u, c = out.float().chunk(2)
            x = sched.step(u + self.guidance * (c - u), t, x, return_dict=False)[0]
        cfg = self.vae.config
        lat = x / cfg.scaling_factor + (getattr(cfg, "shift_factor", None) or 0.0)
        img = self.vae.decode(lat.to(self.vae.dtype), return_dict=False)[0].float()
        arr = ((img[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        return Image.fromarray(np.ascontiguousarray(arr), "RGB")
