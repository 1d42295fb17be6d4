# The paper's setting adapted to a CPU, shared by the tiny and the synthetic-world configs.
# CPU-only changes: a plain OptimWrapper (AMP refuses CPU), a warm-up of several iterations
# (a warm-up rounded to one iteration never ramps: the cosine then starts from lr * 0.1),
# gloo, no activation checkpointing (set in each config's model), frequent logging.
# Children set `lr` through `optim_wrapper.optimizer.lr = ...` (a top-level `lr` alone would
# not reach the dict built here).
from mmengine.config import read_base
from mmengine.optim import CosineAnnealingLR, LinearLR, OptimWrapper
from torch.optim import AdamW

with read_base():
    from .paper_setting import *  # noqa: F401,F403

num_gpus = 1
warmup_ratio = 0.1

optim_wrapper = dict(
    type=OptimWrapper,
    optimizer=dict(type=AdamW, lr=lr, betas=betas, weight_decay=weight_decay),
    clip_grad=dict(max_norm=max_norm, error_if_nonfinite=False),
    accumulative_counts=1)

param_scheduler = [
    dict(type=LinearLR, start_factor=0.1, by_epoch=True, begin=0,
         end=warmup_ratio * max_epochs, convert_to_iter_based=True),
    dict(type=CosineAnnealingLR, eta_min=0.0, by_epoch=True, begin=warmup_ratio * max_epochs,
         end=max_epochs, convert_to_iter_based=True),
]

default_hooks.logger.interval = 1
env_cfg.dist_cfg.backend = 'gloo'
