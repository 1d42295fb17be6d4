# Mask-DPO on Llama-3.1-8B-Instruct, full fine-tune, the paper's setting (8 x A100/H100).
#
#   NPROC_PER_NODE=8 xtuner train configs/maskdpo/llama3_1_8b_instruct_maskdpo_full.py \
#       --deepspeed deepspeed_zero3
#
# Then convert the last checkpoint to a Hugging Face folder in safetensors (bf16, the training
# dtype; add --fp32 for fp32, never fp16):
#   xtuner convert pth_to_hf configs/maskdpo/llama3_1_8b_instruct_maskdpo_full.py \
#       work_dirs/llama3_1_8b_instruct_maskdpo_full/iter_XXX.pth work_dirs/maskdpo_hf \
#       --safe-serialization
# Curves (loss, rewards, margin, accuracy, tokens counted per side, lr) while it trains:
#   tensorboard --logdir work_dirs/llama3_1_8b_instruct_maskdpo_full
# A copy to edit, self-contained: maskdpo-xtuner copy-cfg llama3_1_8b_instruct_maskdpo_full .
#
# Fewer GPUs: keep the global batch at 64 pairs (see configs/_base_/paper_setting.py), e.g.
#   NPROC_PER_NODE=4 xtuner train ... --deepspeed deepspeed_zero3 \
#       --cfg-options optim_wrapper.accumulative_counts=2
#
# Data: JSONL in the official Mask-DPO format (data/README.md), e.g. from tools/build_pairs.py.
# Another model: `python tools/train.py THIS_CONFIG --model PATH ...` points every key that holds
# the path (tokenizer, policy, reference, dataset tokenizer: maskdpo_xtuner/train.py finds them)
# at PATH; tools/train.py also returns the trainer's real exit code (`xtuner train` exits 0 on
# failure) and resumes from `--resume PATH` without extra environment variables.
import torch
from mmengine.config import read_base
from mmengine.dataset import DefaultSampler
from transformers import AutoModelForCausalLM, AutoTokenizer

from maskdpo_xtuner.dataset import build_maskdpo_dataset, maskdpo_collate_fn
from maskdpo_xtuner.model import MaskDPO

with read_base():
    from .._base_.paper_setting import *  # noqa: F401,F403

pretrained_model_name_or_path = 'meta-llama/Llama-3.1-8B-Instruct'
data_files = ['data/maskdpo_train.jsonl']

# Reference log-probs. None (default): the frozen reference model runs on every step.
# A file, e.g. 'work_dirs/llama3_1_8b_instruct_maskdpo_full/ref_logps.pt': compute them once,
#   torchrun --nproc_per_node 8 tools/precompute_ref_logps.py THIS_CONFIG
# and training reads them instead: no reference model is loaded (no second copy of the weights,
# about 20-25% fewer FLOPs per step). The file is refused, naming what differs, if the data,
# tokenizer, max_length or reference weights changed; changing mask_mode or separator_tokens /
# end_tokens reuses it. Used in two places below (model and dataset); with --cfg-options set
# both model.ref_logps_cache and train_dataloader.dataset.ref_logps_cache.
ref_logps_cache = None

tokenizer = dict(type=AutoTokenizer.from_pretrained,
                 pretrained_model_name_or_path=pretrained_model_name_or_path,
                 padding_side='right')

model = dict(
    type=MaskDPO,
    mask_mode=mask_mode,
    separator_tokens='keep',  # tokens between sentences: 'keep' (as the official code) or 'mask'
    end_tokens='keep',        # <|eot_id|>: 'keep' or 'mask'
    loss_type=dpo_loss_type,
    beta=loss_beta,
    label_smoothing=label_smoothing,
    use_varlen_attn=False,
    # bf16 throughout: training (DeepSpeed/AMP bf16), the reference, the reference cache's
    # fingerprint and the exported model (`pth_to_hf` without --fp32 keeps it, MaskDPO.to_hf).
    llm=dict(type=AutoModelForCausalLM.from_pretrained,
             pretrained_model_name_or_path=pretrained_model_name_or_path,
             torch_dtype=torch.bfloat16),
    # ZeRO-3 cannot deepcopy the policy: the frozen reference is loaded explicitly.
    ref_llm=dict(type=AutoModelForCausalLM.from_pretrained,
                 pretrained_model_name_or_path=pretrained_model_name_or_path,
                 torch_dtype=torch.bfloat16),
    ref_logps_cache=ref_logps_cache,  # when set, ref_llm is only fingerprinted, never loaded
    # Log-probs from the last hidden state, the LM head by chunks of labelled positions: no
    # [batch, length, 128256] logits (3.9 GiB of bf16 per 8-pair micro-batch) nor their gradient,
    # for about 2% more FLOPs (docs/performance.md). False: the logits as XTuner builds them.
    chunked_lm_head=True,
)

train_dataset = dict(
    type=build_maskdpo_dataset,
    data_files=data_files,
    tokenizer=tokenizer,
    max_length=max_length,
    on_error='raise',  # 'skip' drops bad records and reports how many and why
    unlabelled_tokens='mask',  # response text no sentence covers: 'mask', 'keep' or 'error'
    ref_logps_cache=ref_logps_cache,
    # 'arrow' (default): rank 0 tokenizes once (num_proc processes) into a memory-mapped cache
    # in cache_dir, keyed by the data, tokenizer, max_length and code, which every rank and
    # every later start opens (docs/datasets.md: at 100k pairs 0.02x the memory per rank).
    # 'lists': every rank tokenizes and holds every pair (the same items). cache_dir and
    # num_proc only matter for 'arrow'.
    backend='arrow',
    cache_dir='work_dirs/maskdpo_data_cache',
    num_proc=8,
)

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=0,
    dataset=train_dataset,
    sampler=dict(type=DefaultSampler, shuffle=True),
    collate_fn=dict(type=maskdpo_collate_fn),
)
