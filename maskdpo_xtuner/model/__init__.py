from .logps import head_logps, lm_logps, token_logps
from .loss import mask_dpo_loss, preference_loss, token_weights
from .maskdpo import MaskDPO

__all__ = ['MaskDPO', 'head_logps', 'lm_logps', 'mask_dpo_loss', 'preference_loss',
           'token_logps', 'token_weights']
