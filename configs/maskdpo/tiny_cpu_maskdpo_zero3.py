# The tiny CPU config under DeepSpeed ZeRO-3 (CPU processes, gloo): the 8B full config's
# launch at toy scale, so ZeRO-3 construction, a step and checkpoint conversion run on CPU.
#
#   python tools/train.py configs/maskdpo/tiny_cpu_maskdpo_zero3.py --nproc 2 \
#       --deepspeed configs/deepspeed/zero3_cpu_fp32.json --work-dir work_dirs/tiny_cpu_zero3
#   (`NPROC_PER_NODE=2 xtuner train configs/maskdpo/tiny_cpu_maskdpo_zero3.py --deepspeed ...`
#   only with GPUs: on CPU mmengine's init_dist asks for a CUDA device; tools/train.py skips it)
#   xtuner convert pth_to_hf configs/maskdpo/tiny_cpu_maskdpo_zero3.py \
#       work_dirs/tiny_cpu_zero3/iter_6.pth work_dirs/tiny_cpu_zero3/hf --fp32 --safe-serialization
#
# ZeRO-3 partitions the policy, so XTuner cannot copy it into a reference: the reference is
# loaded from the same weights, as in the 8B full configs.
from mmengine.config import read_base

with read_base():
    from .tiny_cpu_maskdpo import *  # noqa: F401,F403

model.ref_llm = dict(model.llm)  # an explicit reference (same path, same dtype)
