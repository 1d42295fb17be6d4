"""mmengine hooks used by the configs."""
import os

from mmengine.hooks import Hook


class ResumeCheckpointHook(Hook):
    """Let ``--resume`` / ``load_from`` read mmengine checkpoints under torch >= 2.6.

    mmengine saves numpy arrays and its own objects (message-hub history) in every checkpoint;
    torch's default ``weights_only`` loader refuses them, so resuming fails. Only when this run
    resumes or loads a checkpoint (your own training output), this hook turns full unpickling
    on for the process (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``) and says so in the log.
    """

    priority = 'VERY_HIGH'

    def before_run(self, runner):
        if getattr(runner, '_resume', False) or getattr(runner, '_load_from', None):
            os.environ.setdefault('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
            runner.logger.info('ResumeCheckpointHook: loading the checkpoint with full '
                               'unpickling (weights_only=False); only use checkpoints you made')
