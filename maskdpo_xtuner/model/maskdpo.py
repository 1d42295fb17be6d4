"""``MaskDPO``: XTuner's DPO model with sentence masks applied through explicit token weights."""
import torch
from xtuner.model.dpo import DPO
from xtuner.model.sft import SupervisedFinetune
from xtuner.parallel.sequence import get_sequence_parallel_world_size

from .loss import LOSS_TYPES, MASK_MODES, mask_dpo_loss, token_logps


def _prepare_attn_cpu_safe(cfg, llm_cfg):
    """XTuner asks ``torch.cpu.is_bf16_supported`` (absent) when CUDA is missing; on CPU use
    SDPA attention and keep the configured dtype. With CUDA, XTuner's own choice applies."""
    if torch.cuda.is_available():
        return SupervisedFinetune._prepare_for_flash_attn(cfg, llm_cfg)
    if getattr(cfg, 'attn_implementation', None) is None:
        cfg.attn_implementation = 'sdpa'
    return cfg


class _CpuSafeFinetune(SupervisedFinetune):
    _prepare_for_flash_attn = staticmethod(_prepare_attn_cpu_safe)


class MaskDPO(DPO):
    """Mask-DPO (Gu et al., ICLR 2025) as an XTuner model.

    Args (beyond XTuner's ``DPO``: llm, ref_llm, beta, loss_type, label_smoothing, lora, ...):
        mask_mode: 'both' (Mask-DPO), 'chosen', 'rejected' or 'none' (vanilla DPO on the same
            data): which side's sentence masks apply. See ``model/loss.py``.
        separator_tokens: 'keep' or 'mask' tokens inside a response that belong to no sentence.
        end_tokens: 'keep' or 'mask' the end-of-turn tokens after the response.

    The batch must come from ``maskdpo_collate_fn`` (it carries ``token_class``).
    """

    _prepare_for_flash_attn = staticmethod(_prepare_attn_cpu_safe)

    def __init__(self, llm, ref_llm=None, beta=0.1, loss_type='sigmoid', label_smoothing=0.0,
                 mask_mode='both', separator_tokens='keep', end_tokens='keep', **kwargs):
        if mask_mode not in MASK_MODES:
            raise ValueError(f'mask_mode must be one of {MASK_MODES}, got {mask_mode!r}')
        if loss_type not in LOSS_TYPES:
            raise ValueError(f'loss_type must be one of {LOSS_TYPES}, got {loss_type!r}')
        if kwargs.get('use_varlen_attn'):
            raise ValueError('MaskDPO does not support use_varlen_attn=True (packed sequences); '
                             'set use_varlen_attn=False')
        super().__init__(llm, ref_llm=ref_llm, beta=beta, loss_type=loss_type,
                         label_smoothing=label_smoothing, **kwargs)
        self.mask_mode = mask_mode
        self.separator_tokens, self.end_tokens = separator_tokens, end_tokens

    def create_reference_model(self, ref_llm=None, **kwargs):
        if ref_llm is None:  # a copy of the policy (not allowed under ZeRO-3: XTuner says so)
            return super().create_reference_model(None, **kwargs)
        # XTuner builds an explicit ref_llm through SupervisedFinetune, which crashes on CPU.
        kwargs = {k: v for k, v in kwargs.items() if k not in ('lora', 'peft_model')}
        kwargs['use_activation_checkpointing'] = False
        ref = _CpuSafeFinetune(ref_llm, **kwargs).llm
        for p in ref.parameters():
            p.requires_grad = False
        return ref.eval()

    def reference_logits(self, data):
        with torch.no_grad():
            if self.ref_llm is None:  # LoRA: the base model is the reference
                with self.llm.disable_adapter():
                    return self.llm(**data).logits
            return self.ref_llm(**data).logits

    def compute_loss(self, data, data_samples=None):
        if get_sequence_parallel_world_size() > 1:
            raise ValueError('MaskDPO does not support sequence parallelism')
        labels, token_class = data.pop('labels'), data.pop('token_class')
        policy = token_logps(self.llm(**data).logits, labels)
        ref = token_logps(self.reference_logits(data), labels)
        return mask_dpo_loss(policy, ref, token_class, self.beta, self.loss_type,
                             self.label_smoothing, self.mask_mode, self.separator_tokens,
                             self.end_tokens)
