from maskdpo_xtuner.model.logps import head_logps, lm_logps, token_logps
from maskdpo_xtuner.model.loss import mask_dpo_loss, preference_loss, token_weights
from maskdpo_xtuner.model.maskdpo import MaskDPO

__all__ = ['MaskDPO', 'head_logps', 'lm_logps', 'mask_dpo_loss', 'preference_loss',
           'token_logps', 'token_weights']
