# Mask-DPO in the synthetic world, on CPU: the training step of tools/world_study.py.
#
#   xtuner train configs/world/world_maskdpo_cpu.py --work-dir work_dirs/world/maskdpo \
#       --cfg-options tokenizer.pretrained_model_name_or_path=BASE \
#                     model.llm.pretrained_model_name_or_path=BASE \
#                     train_dataloader.dataset.tokenizer.pretrained_model_name_or_path=BASE \
#                     train_dataloader.dataset.data_files=PAIRS.jsonl
#
# (tools/world_study.py fills in BASE, the world's base model, and PAIRS, the pairs it built.)
# The paper's recipe (sigmoid DPO, beta 0.1, 3 epochs, AdamW, cosine) at the world's scale: a
# 1.1M-parameter model on CPU, batch 16 pairs. lr 5e-5 was chosen on the world's validation
# topics (`tools/world_study.py --study tune --lrs 2e-5 5e-5 1e-4 2e-4`, seed 0: best sampled
# in-domain validation score for both arms, DPO 59.3 and Mask-DPO 60.5).
import torch
from mmengine.config import read_base
from mmengine.dataset import DefaultSampler
from transformers import AutoModelForCausalLM, AutoTokenizer

from maskdpo_xtuner.dataset import build_maskdpo_dataset, maskdpo_collate_fn
from maskdpo_xtuner.model import MaskDPO

with read_base():
    from .._base_.cpu_setting import *  # noqa: F401,F403

pretrained_model_name_or_path = 'work_dirs/world/base'
data_files = ['work_dirs/world/pairs.jsonl']
max_length = 256
batch_size = 16
global_batch = batch_size * num_gpus
max_epochs = 3
lr = 5e-5

tokenizer = dict(type=AutoTokenizer.from_pretrained,
                 pretrained_model_name_or_path=pretrained_model_name_or_path,
                 padding_side='right')

model = dict(
    type=MaskDPO,
    mask_mode=mask_mode,
    separator_tokens='keep',
    end_tokens='keep',
    loss_type=dpo_loss_type,
    beta=loss_beta,
    label_smoothing=label_smoothing,
    use_varlen_attn=False,
    use_activation_checkpointing=False,
    llm=dict(type=AutoModelForCausalLM.from_pretrained,
             pretrained_model_name_or_path=pretrained_model_name_or_path,
             torch_dtype=torch.float32),
    ref_llm=None,
)

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=0,
    dataset=dict(type=build_maskdpo_dataset, data_files=data_files, tokenizer=tokenizer,
                 max_length=max_length, on_error='raise', progress=False),
    sampler=dict(type=DefaultSampler, shuffle=True),
    collate_fn=dict(type=maskdpo_collate_fn),
)

optim_wrapper.optimizer.lr = lr
train_cfg = dict(type=TrainLoop, max_epochs=max_epochs)

default_hooks.logger.interval = 10
default_hooks.checkpoint.interval = 100000  # the final checkpoint is enough
