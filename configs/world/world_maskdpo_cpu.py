# Mask-DPO in the synthetic world, on CPU: the training step of tools/world_study.py.
#
#   python tools/train.py configs/world/world_maskdpo_cpu.py --work-dir work_dirs/world/maskdpo \
#       --model BASE --cfg-options train_dataloader.dataset.data_files=PAIRS.jsonl
#   (or: xtuner train configs/world/world_maskdpo_cpu.py with the same --cfg-options and the
#    model-path keys of maskdpo_xtuner.train.model_path_keys)
#
# (tools/world_study.py fills in BASE, the world's base model, and PAIRS, the pairs it built.)
# The paper's recipe (sigmoid DPO, beta 0.1, 3 epochs, AdamW, cosine) at the world's scale: the
# tiny CPU config (itself the 8B config adapted to a CPU) with a 1.1M-parameter model and batch
# 16 pairs. lr 5e-5 was chosen on the world's validation topics (`tools/world_study.py --study
# tune --lrs 2e-5 5e-5 1e-4 2e-4`, seed 0: best sampled in-domain validation score for both
# arms, DPO 59.3 and Mask-DPO 60.5).
from mmengine.config import read_base

with read_base():
    from ..maskdpo.tiny_cpu_maskdpo import *  # noqa: F401,F403

data_files = ['work_dirs/world/pairs.jsonl']
batch_size = 16
global_batch = batch_size * num_gpus
lr = 5e-5
train_dataloader.batch_size = batch_size
train_dataloader.dataset.data_files = data_files
train_dataloader.dataset.progress = False
optim_wrapper.optimizer.lr = lr
default_hooks.logger.interval = 10
default_hooks.checkpoint.interval = 100000  # the final checkpoint is enough
