"""GPU-only checks run by tools/gpu_smoke.sh (skipped without CUDA): the environment, and XTuner's
flash dispatch with the real flash-attn in a single process (the CPU suite runs the same path
through tests/flash_standin.py)."""
import pytest
import torch
from mmengine.config import ConfigDict

from conftest import hf
from maskdpo_xtuner.model import MaskDPO

pytestmark = pytest.mark.gpu


def test_gpu_environment():
    import deepspeed
    import flash_attn
    import lmdeploy
    from transformers.utils import is_flash_attn_2_available
    assert torch.cuda.is_available() and is_flash_attn_2_available()
    assert deepspeed.__version__ == '0.16.2', deepspeed.__version__
    assert flash_attn.__version__.startswith('2.'), flash_attn.__version__
    assert lmdeploy.__version__ == '0.11.1', lmdeploy.__version__


def test_flash_dispatch_single_process_matches_sdpa(tiny_model_dir, data):
    import torch.distributed as dist
    assert not dist.is_initialized()  # plain `xtuner train` on one GPU starts none
    sdpa = MaskDPO(ConfigDict(hf(tiny_model_dir, torch.bfloat16), attn_implementation='sdpa'),
                   use_activation_checkpointing=False).cuda()
    flash = MaskDPO(ConfigDict(hf(tiny_model_dir, torch.bfloat16),
                               attn_implementation='flash_attention_2'),
                    use_activation_checkpointing=False).cuda()
    ids = torch.tensor([data[0]['chosen_ids']], device='cuda')
    with torch.no_grad():
        want = sdpa.llm(input_ids=ids).logits.float()
        got = flash.llm(input_ids=ids).logits.float()
    torch.testing.assert_close(got, want, rtol=0, atol=5e-2)  # bf16 kernels differ in rounding
