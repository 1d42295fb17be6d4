"""The model: ``loss.py`` and ``logps.py`` need torch alone; ``MaskDPO`` (the XTuner model, in
``maskdpo.py``) is imported on first use, so ``import maskdpo_xtuner.model.loss`` loads no
XTuner, mmengine or DeepSpeed, while ``from maskdpo_xtuner.model import MaskDPO`` (the configs)
works as before."""
from maskdpo_xtuner.model.logps import head_logps, lm_logps, token_logps
from maskdpo_xtuner.model.loss import mask_dpo_loss, preference_loss, token_weights

__all__ = ['MaskDPO', 'head_logps', 'lm_logps', 'mask_dpo_loss', 'preference_loss',
           'token_logps', 'token_weights']


def __getattr__(name):
    if name == 'MaskDPO':
        from maskdpo_xtuner.model.maskdpo import MaskDPO
        return MaskDPO
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
