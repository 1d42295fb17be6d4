# Vanilla DPO in the synthetic world: the same pairs, tokens and schedule, no sentence masks.
#
#   xtuner train configs/world/world_dpo_cpu.py --work-dir work_dirs/world/dpo --cfg-options ...
#
# (see world_maskdpo_cpu.py for the options tools/world_study.py passes)
from mmengine.config import read_base

with read_base():
    from .world_maskdpo_cpu import *  # noqa: F401,F403

model.mask_mode = 'none'
