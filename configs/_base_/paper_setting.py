# The paper's training setting (Mask-DPO, ICLR 2025, Appendix A), shared by every 8B config.
# Nothing here names a model or a data file; the configs in configs/maskdpo/ add those.
#
#   epochs 3 | lr 5e-6 | AdamW (0.9, 0.999), weight decay 0 | cosine annealing to 0 after a 3%
#   linear warm-up | global batch 64 pairs | DPO beta 0.1, sigmoid loss | grad clip 1.0
#
# Global batch = batch_size (per GPU) x accumulative_counts x number of GPUs.
# The default is 8 x 1 x 8 GPUs = 64 pairs. With fewer GPUs keep 64 by raising the accumulation,
# e.g. 4 GPUs: --cfg-options optim_wrapper.accumulative_counts=2
#      1 GPU : --cfg-options optim_wrapper.accumulative_counts=8
# (override the nested key: overriding the top-level `accumulative_counts` does not reach the
# optim_wrapper dict already built from it.)
from mmengine.hooks import (CheckpointHook, DistSamplerSeedHook, IterTimerHook, LoggerHook,
                            ParamSchedulerHook)
from mmengine.optim import AmpOptimWrapper, CosineAnnealingLR, LinearLR
from mmengine.visualization import LocalVisBackend, TensorboardVisBackend, Visualizer
from torch.optim import AdamW
from xtuner.engine.runner import TrainLoop

from maskdpo_xtuner.hooks import ResumeCheckpointHook

# Loss
dpo_loss_type = 'sigmoid'  # or any XTuner DPO loss: robust, hinge, ipo, kto_pair, sppo_hard, nca_pair
loss_beta = 0.1
label_smoothing = 0.0
mask_mode = 'both'  # Mask-DPO. 'none' = vanilla DPO; 'chosen' / 'rejected' = one-sided masks

# Data
max_length = 1024

# Batch: 64 pairs per optimizer step on 8 GPUs
num_gpus = 8
batch_size = 8  # pairs per GPU
accumulative_counts = 1
global_batch = batch_size * accumulative_counts * num_gpus  # 64, checked by the tests

# Optimizer and schedule
max_epochs = 3
lr = 5e-6
betas = (0.9, 0.999)
weight_decay = 0
max_norm = 1
warmup_ratio = 0.03

# Save
save_steps = 200
save_total_limit = 2

optim_wrapper = dict(
    type=AmpOptimWrapper,  # replaced by DeepSpeed's wrapper when launched with --deepspeed
    optimizer=dict(type=AdamW, lr=lr, betas=betas, weight_decay=weight_decay),
    clip_grad=dict(max_norm=max_norm, error_if_nonfinite=False),
    accumulative_counts=accumulative_counts,
    loss_scale='dynamic',
    dtype='bfloat16')

param_scheduler = [
    dict(type=LinearLR, start_factor=1e-5, by_epoch=True, begin=0,
         end=warmup_ratio * max_epochs, convert_to_iter_based=True),
    dict(type=CosineAnnealingLR, eta_min=0.0, by_epoch=True, begin=warmup_ratio * max_epochs,
         end=max_epochs, convert_to_iter_based=True),
]

train_cfg = dict(type=TrainLoop, max_epochs=max_epochs)

default_hooks = dict(
    timer=dict(type=IterTimerHook),
    logger=dict(type=LoggerHook, log_metric_by_epoch=False, interval=10),
    param_scheduler=dict(type=ParamSchedulerHook),
    checkpoint=dict(type=CheckpointHook, by_epoch=False, interval=save_steps,
                    max_keep_ckpts=save_total_limit),
    sampler_seed=dict(type=DistSamplerSeedHook),
)

custom_hooks = [dict(type=ResumeCheckpointHook)]

env_cfg = dict(cudnn_benchmark=False,
               mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='nccl'))
# Training curves: WORK_DIR/<run>/vis_data/ gets scalars.json and TensorBoard event files
# (`tensorboard --logdir WORK_DIR`): loss, chosen/rejected rewards, reward margin and accuracy,
# tokens counted per chosen/rejected answer, masked share, learning rate. Weights & Biases as
# well: add dict(type=WandbVisBackend, init_kwargs=dict(project='maskdpo')) to vis_backends
# (from mmengine.visualization import WandbVisBackend; pip install wandb).
visualizer = dict(type=Visualizer,
                  vis_backends=[dict(type=LocalVisBackend), dict(type=TensorboardVisBackend)])
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=42, deterministic=False)
log_processor = dict(by_epoch=False)
