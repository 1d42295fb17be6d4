"""``MaskDPO``: XTuner's DPO model with sentence masks applied through explicit token weights."""
import copy

import torch
import torch.nn.functional as F
from mmengine import MessageHub
from mmengine.dist import get_rank
from mmengine.logging import print_log
from mmengine.runner import load_checkpoint
from peft import get_peft_model
from torch.nn.utils.rnn import pad_sequence
from xtuner.model.dpo import DPO, create_reference_model, disable_grad
from xtuner.model.sft import SupervisedFinetune
from xtuner.model.utils import find_all_linear_names
from xtuner.parallel.sequence import get_sequence_parallel_world_size

from maskdpo_xtuner.labels import PROMPT
from maskdpo_xtuner.dataset.ref_logps import check_reference
from maskdpo_xtuner.model.flash import repair_xtuner_flash_dispatch
from maskdpo_xtuner.model.logps import lm_logps, split_head
from maskdpo_xtuner.model.loss import LOSS_TYPES, MASK_MODES, mask_dpo_loss


def _prepare_attn_cpu_safe(cfg, llm_cfg):
    """XTuner asks ``torch.cpu.is_bf16_supported`` (absent) when CUDA is missing; on CPU use
    SDPA attention and keep the configured dtype. With CUDA, XTuner's own choice applies."""
    if torch.cuda.is_available():
        return SupervisedFinetune._prepare_for_flash_attn(cfg, llm_cfg)
    if getattr(cfg, 'attn_implementation', None) is None:
        cfg.attn_implementation = 'sdpa'
    return cfg


def trust_remote_code(llm_cfg) -> bool:
    """Whether a model folder's own Python may run on load: only when the config asks for it
    (``llm=dict(..., trust_remote_code=True)``). XTuner reads every model's config with
    ``trust_remote_code=True`` hard-wired; here it is off by default."""
    return bool(llm_cfg.get('trust_remote_code', False))


def _dispatch_lm_model_cfg(self, cfg, max_position_embeddings=None):
    """XTuner's ``SupervisedFinetune._dispatch_lm_model_cfg`` with :func:`trust_remote_code`
    instead of ``True``."""
    from transformers import AutoConfig
    cfg = self._prepare_for_qlora_zero3(cfg)
    llm_cfg = AutoConfig.from_pretrained(cfg.pretrained_model_name_or_path,
                                         trust_remote_code=trust_remote_code(cfg))
    cfg = self._prepare_for_flash_attn(cfg, llm_cfg)
    if max_position_embeddings is not None:
        cfg = self._prepare_for_long_context_training(cfg, llm_cfg, max_position_embeddings)
    return cfg


class _CpuSafeFinetune(SupervisedFinetune):
    _prepare_for_flash_attn = staticmethod(_prepare_attn_cpu_safe)
    _dispatch_lm_model_cfg = _dispatch_lm_model_cfg


def resolved_dtype(llm_cfg) -> torch.dtype:
    """The dtype ``llm_cfg``'s model is loaded in, without loading it: after the attention
    preparation MaskDPO applies (with flash-attn 2 XTuner sets bf16/fp16 whatever the config
    says), ``None`` -> torch's default dtype, ``'auto'`` -> its config.json's."""
    from transformers import AutoConfig
    cfg = copy.deepcopy(llm_cfg)
    hf_cfg = AutoConfig.from_pretrained(cfg['pretrained_model_name_or_path'],
                                        trust_remote_code=trust_remote_code(cfg))
    dtype = _prepare_attn_cpu_safe(cfg, hf_cfg).get('torch_dtype')
    if dtype == 'auto':
        dtype = getattr(hf_cfg, 'torch_dtype', None)
    if dtype is None:
        return torch.get_default_dtype()
    return getattr(torch, dtype) if isinstance(dtype, str) else dtype


def build_reference(llm_cfg):
    """A frozen reference model built as ``MaskDPO`` builds one (same attention and dtype
    choice), for ``tools/precompute_ref_logps.py``."""
    llm = disable_grad(_CpuSafeFinetune(llm_cfg, use_activation_checkpointing=False).llm)
    repair_xtuner_flash_dispatch()
    return llm


class MaskDPO(DPO):
    """Mask-DPO (Gu et al., ICLR 2025) as an XTuner model.

    Args (beyond XTuner's ``DPO``: llm, ref_llm, beta, loss_type, label_smoothing, lora, ...):
        mask_mode: 'both' (Mask-DPO), 'chosen', 'rejected' or 'none' (vanilla DPO on the same
            data): which side's sentence masks apply. See ``model/loss.py``.
        separator_tokens: 'keep' or 'mask' tokens inside a response that belong to no sentence.
        end_tokens: 'keep' or 'mask' the end-of-turn tokens after the response.
        ref_logps_cache: None (default: the reference model runs on every step) or the file of
            reference log-probs written by ``tools/precompute_ref_logps.py``. Then no reference
            model is built: the file is checked here against the reference weights (``ref_llm``,
            or ``llm`` when that is None) and by ``build_maskdpo_dataset`` (given the same path)
            against the data, which carries the values into every batch.
        use_varlen_attn: packed batches (``PackedPairs``, ``maskdpo_collate_fn(use_varlen_attn=
            True)``, batch size 1). With flash-attn 2 (GPU) XTuner's varlen attention reads the
            boundaries from ``VarlenAttnArgsToMessageHubHook``; otherwise (CPU, SDPA, eager) a
            block-diagonal causal mask is passed. No sequence attends across a boundary.
        chunked_lm_head: True (default) computes per-token log-probs straight from the last
            hidden state, the LM head applied by chunks of labelled positions and recomputed in
            backward: no [batch, length, vocabulary] logits or logit gradient ever exist, for
            the policy or the online reference (``model/logps.py``). False: the model's own
            forward builds the logits (XTuner's way; same values).

    A model folder's own Python (``auto_map`` in its config.json) runs only if its config dict
    says ``trust_remote_code=True`` (XTuner hard-wires it on; :func:`trust_remote_code`).

    The batch must come from ``maskdpo_collate_fn`` (it carries ``token_class``).
    """

    _prepare_for_flash_attn = staticmethod(_prepare_attn_cpu_safe)
    _dispatch_lm_model_cfg = _dispatch_lm_model_cfg

    def __init__(self, llm, ref_llm=None, beta=0.1, loss_type='sigmoid', label_smoothing=0.0,
                 mask_mode='both', separator_tokens='keep', end_tokens='keep',
                 ref_logps_cache=None, chunked_lm_head=True, **kwargs):
        if mask_mode not in MASK_MODES:
            raise ValueError(f'mask_mode must be one of {MASK_MODES}, got {mask_mode!r}')
        if loss_type not in LOSS_TYPES:
            raise ValueError(f'loss_type must be one of {LOSS_TYPES}, got {loss_type!r}')
        if ref_logps_cache:  # before anything is loaded: a stale cache fails fast
            ref_cfg = ref_llm if ref_llm is not None else llm
            check_reference(ref_logps_cache, ref_cfg, resolved_dtype(ref_cfg))
        # DPO.__init__ minus its reference model, which _build_reference decides
        SupervisedFinetune.__init__(self, llm, **kwargs)
        self.beta, self.loss_type, self.label_smoothing = beta, loss_type, label_smoothing
        self.mask_mode = mask_mode
        self.separator_tokens, self.end_tokens = separator_tokens, end_tokens
        self.ref_logps_cache = ref_logps_cache
        self.chunked_lm_head = chunked_lm_head
        self.ref_llm = self._build_reference(ref_llm, kwargs.get('max_position_embeddings'))
        repair_xtuner_flash_dispatch()  # packed rows and single-process runs (model/flash.py)
        if chunked_lm_head:  # an unsupported head fails here, not at the first step
            for model in (self.llm, self.ref_llm):
                if model is not None:
                    split_head(model)

    def _prepare_for_lora(self, peft_model=None, use_activation_checkpointing=True):
        """XTuner's, without peft's k-bit preparation on a model that is not quantized: that
        casts every bf16/fp16 weight to fp32 (twice the memory of the frozen base). The base
        stays in its configured dtype; peft keeps the adapter weights in fp32."""
        if getattr(self.llm, 'is_loaded_in_8bit', False) or \
                getattr(self.llm, 'is_loaded_in_4bit', False):
            return super()._prepare_for_lora(peft_model, use_activation_checkpointing)
        for p in self.llm.parameters():
            p.requires_grad_(False)
        if use_activation_checkpointing:  # checkpointed blocks need an input that wants grad
            self.llm.enable_input_require_grads()
        if self.lora.target_modules is None:
            self.lora.target_modules = find_all_linear_names(self.llm)
        self.llm = get_peft_model(self.llm, self.lora)
        if peft_model is not None:
            load_checkpoint(self, peft_model)

    def to_hf(self, cfg, save_dir, fp32=False, save_pretrained_kwargs={}, **kwargs):
        """``xtuner convert pth_to_hf``: the weights in the dtype they trained in (the config's
        ``model.llm.torch_dtype``: bf16 on GPU, fp32 on CPU), or fp32 with ``--fp32``. XTuner's
        own casts to fp16 unless ``--fp32`` (a bf16 policy would then run at another precision
        than its bf16 base under LMDeploy's "auto") and leaves a bf16 model bf16 with it."""
        if fp32:
            self.llm.float()
        print_log(f'MaskDPO: exporting in {next(self.llm.parameters()).dtype}', 'current')
        return super().to_hf(cfg, save_dir, fp32=True,  # True: XTuner does not cast to fp16
                             save_pretrained_kwargs=save_pretrained_kwargs, **kwargs)

    def _build_reference(self, ref_llm, max_position_embeddings):
        """None with cached log-probs, or with LoRA (the reference is the adapter switched off);
        ``ref_llm`` when given; else a frozen copy of the policy (XTuner refuses it under
        ZeRO-3)."""
        if self.ref_logps_cache:
            print_log(f'MaskDPO: reference log-probs come from {self.ref_logps_cache}; '
                      'no reference model is built', logger='current')
            return None
        if ref_llm is None:
            return None if self.use_lora else create_reference_model(self.llm)
        return disable_grad(self.build_llm_from_cfg(ref_llm, self.use_varlen_attn,
                                                    max_position_embeddings))

    def compute_loss(self, data, data_samples=None):
        if get_sequence_parallel_world_size() > 1:
            raise ValueError('MaskDPO does not support sequence parallelism')
        labels, token_class = data.pop('labels'), data.pop('token_class')
        cached = data.pop('ref_logps', None)
        cu_seqlens = self._packed_attention(data) if self.use_varlen_attn else None
        ref = self.reference_logps(data, labels, cached)  # first: its memory goes before ours
        policy = lm_logps(self.llm, data, labels, self.chunked_lm_head)
        if cu_seqlens is not None:  # one packed row -> one row per sequence, as if unpacked
            policy, ref = unpack(policy, cu_seqlens, shifted=True), unpack(ref, cu_seqlens, True)
            token_class = unpack(token_class, cu_seqlens, pad_value=PROMPT)
        return mask_dpo_loss(policy, ref, token_class, self.beta, self.loss_type,
                             self.label_smoothing, self.mask_mode, self.separator_tokens,
                             self.end_tokens)

    def reference_logps(self, data, labels, cached=None):
        """Per-token reference log-probs: the batch's precomputed ones, or a no-grad forward."""
        if self.ref_logps_cache:
            if cached is None:
                raise ValueError('model.ref_logps_cache is set but the batch carries no reference '
                                 'log-probs: give the dataset the same ref_logps_cache')
            return cached
        if cached is not None:
            raise ValueError('the batch carries precomputed reference log-probs (the dataset has '
                             'ref_logps_cache) but model.ref_logps_cache is None: set both')
        with torch.no_grad():
            if self.ref_llm is None:  # LoRA: the base model is the reference
                with self.llm.disable_adapter():
                    return lm_logps(self.llm, data, labels, self.chunked_lm_head)
            return lm_logps(self.ref_llm, data, labels, self.chunked_lm_head)

    def _packed_attention(self, data):
        """Boundaries (cu_seqlens) of a packed batch, and attention that respects them."""
        cu_seqlens = data.pop('cumulative_len', None)
        data.pop('max_seqlen', None)
        flash = self.llm.config._attn_implementation == 'flash_attention_2'
        if cu_seqlens is None:  # VarlenAttnArgsToMessageHubHook moved it to the message hub
            hub = MessageHub.get_instance('varlen_attn_args')
            cu_seqlens = hub.get_info(f'cumulative_len_rank_{get_rank()}')
        elif flash:
            raise ValueError('flash-attn varlen reads the boundaries from the message hub: add '
                             'dict(type=VarlenAttnArgsToMessageHubHook) to custom_hooks')
        else:
            cu_seqlens = cu_seqlens[0]
        if cu_seqlens is None:
            raise ValueError('use_varlen_attn=True needs packed batches: a PackedPairs dataset, '
                             'maskdpo_collate_fn(use_varlen_attn=True) and batch_size=1')
        if not flash:  # flash-attn varlen takes cu_seqlens; SDPA and eager need a mask
            dtype = next(self.llm.parameters()).dtype
            data['attention_mask'] = block_causal_mask(cu_seqlens, dtype)
        return cu_seqlens.to(data['input_ids'].device)


def block_causal_mask(cu_seqlens, dtype=torch.float32):
    """Additive 4-D mask [1, 1, L, L]: position i attends to j iff j <= i in the same sequence."""
    lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).long()
    seq = torch.repeat_interleave(torch.arange(len(lengths), device=lengths.device), lengths)
    pos = torch.arange(len(seq), device=lengths.device)
    allowed = (seq[:, None] == seq[None, :]) & (pos[:, None] >= pos[None, :])
    mask = torch.zeros(allowed.shape, dtype=dtype, device=lengths.device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)[None, None]


def unpack(packed, cu_seqlens, shifted=False, pad_value=0):
    """A packed row [1, L] -> one row per sequence [n, max_len], padded with ``pad_value``.

    ``shifted``: per-token log-probs [1, L - 1] (position t scores token t + 1) -> [n, max_len - 1],
    the layout ``lm_logps`` gives unpacked rows. The score that crosses a boundary is 0 (the
    collate function never labels a sequence's first token) and stays out of every row's sum.
    """
    if shifted:
        return unpack(F.pad(packed, (0, 1)), cu_seqlens, pad_value=pad_value)[:, :-1]
    lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).tolist()
    return pad_sequence(list(packed[0].split(lengths)), batch_first=True, padding_value=pad_value)
