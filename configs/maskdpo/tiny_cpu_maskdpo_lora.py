# The tiny CPU config with LoRA: only the adapter trains, and the reference is the base model
# with the adapter switched off (no second copy of the weights), as in the 8B LoRA config.
#
#   python tools/build_tiny_model.py --out work_dirs/tiny_cpu/model
#   xtuner train configs/maskdpo/tiny_cpu_maskdpo_lora.py --work-dir work_dirs/tiny_cpu_lora
#   xtuner convert pth_to_hf configs/maskdpo/tiny_cpu_maskdpo_lora.py \
#       work_dirs/tiny_cpu_lora/iter_24.pth work_dirs/tiny_cpu_lora/adapter --fp32 \
#       --safe-serialization                                  # writes the adapter only
#   maskdpo-xtuner merge work_dirs/tiny_cpu/model work_dirs/tiny_cpu_lora/adapter \
#       work_dirs/tiny_cpu_lora/merged                        # base + adapter, safetensors
from mmengine.config import read_base
from peft import LoraConfig

with read_base():
    from .tiny_cpu_maskdpo import *  # noqa: F401,F403

lr = 1e-2  # a random tiny model and a small adapter: a large step, not a tuned value
model.lora = dict(type=LoraConfig, r=8, lora_alpha=16, lora_dropout=0.0, bias='none',
                  task_type='CAUSAL_LM')
optim_wrapper.optimizer.lr = lr
