# Mask-DPO on a tiny random Llama on CPU: the smoke test of the whole training path (seconds).
#
#   python tools/build_tiny_model.py --out work_dirs/tiny_cpu/model
#   python tools/train.py configs/maskdpo/tiny_cpu_maskdpo.py --work-dir work_dirs/tiny_cpu
#   (or: xtuner train configs/maskdpo/tiny_cpu_maskdpo.py --work-dir work_dirs/tiny_cpu)
#   xtuner convert pth_to_hf configs/maskdpo/tiny_cpu_maskdpo.py \
#       work_dirs/tiny_cpu/iter_24.pth work_dirs/tiny_cpu/hf --fp32 --safe-serialization
#   tensorboard --logdir work_dirs/tiny_cpu      # the training curves
#
# The 8B Mask-DPO config with only what a CPU and a tiny model need changed (CPU optimizer and
# warm-up from configs/_base_/cpu_setting.py; fp32, no activation checkpointing, the reference a
# frozen copy of the policy, short sequences, small batches, a learning rate for a random model).
# Another model: `tools/train.py CONFIG --model PATH` sets every key below that holds the path.
import torch
from mmengine.config import read_base

with read_base():
    from .llama3_1_8b_instruct_maskdpo_full import *  # noqa: F401,F403
    from .._base_.cpu_setting import *  # noqa: F401,F403

pretrained_model_name_or_path = 'work_dirs/tiny_cpu/model'
tokenizer.pretrained_model_name_or_path = pretrained_model_name_or_path
model.llm.pretrained_model_name_or_path = pretrained_model_name_or_path
train_dataloader.dataset.tokenizer.pretrained_model_name_or_path = pretrained_model_name_or_path

model.llm.torch_dtype = torch.float32
model.ref_llm = None  # a frozen copy of the policy
model.use_activation_checkpointing = False

data_files = ['data/sample_pairs.jsonl']
max_length = 256
batch_size = 4
global_batch = batch_size * num_gpus
lr = 1e-3
del train_dataset  # the dataloader's copy below is the one used
train_dataloader.batch_size = batch_size
train_dataloader.dataset.data_files = data_files
train_dataloader.dataset.max_length = max_length
optim_wrapper.optimizer.lr = lr
default_hooks.checkpoint.interval = 8
