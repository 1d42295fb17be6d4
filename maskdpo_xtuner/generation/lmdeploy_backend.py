"""Offline batched generation with an LMDeploy ``pipeline`` (needs an NVIDIA GPU).

Traps handled here (see the stack notes): ``GenerationConfig.do_sample`` defaults to False and
then LMDeploy decodes greedily whatever top_k/temperature say; ``n > 1`` is ignored, so each
prompt is repeated n times; a fixed ``random_seed`` shared by the copies of one prompt would make
them identical, so every copy gets its own seed (generation/base.py); without CUDA ``pipeline()`` raises
``SystemExit``.
The calling script needs an ``if __name__ == '__main__':`` guard (LMDeploy spawns workers).
"""
import dataclasses
from typing import List, Optional

from maskdpo_xtuner.generation.base import (Completion, SamplingParams, check_choice,
                                             choice_regex, copy_seeds)


def build_generation_config(params: SamplingParams):
    """``lmdeploy.GenerationConfig`` with every sampling parameter explicit.

    Sampling: ``do_sample=True`` with the given top_k / top_p / temperature. Greedy
    (``params.do_sample`` False): ``do_sample=False, top_k=1, top_p=1.0, temperature=1.0``.
    """
    from lmdeploy import GenerationConfig
    if params.presence_penalty or params.frequency_penalty:
        raise ValueError('the lmdeploy pipeline backend has no presence/frequency penalty; '
                         f'got {params.presence_penalty}/{params.frequency_penalty}')
    common = dict(n=1, max_new_tokens=params.max_new_tokens, random_seed=params.seed,
                  skip_special_tokens=True, repetition_penalty=params.repetition_penalty)
    if params.do_sample:
        return GenerationConfig(do_sample=True, top_k=params.top_k, top_p=params.top_p,
                                temperature=params.temperature, min_p=params.min_p, **common)
    return GenerationConfig(do_sample=False, top_k=1, top_p=1.0, temperature=1.0, min_p=0.0,
                            **common)


class LMDeployBackend:
    """Chat completion with an LMDeploy pipeline, created once and reused.

    Args:
        model_path: HF model folder (or a TurboMind workspace for ``engine='turbomind'``).
        engine: ``'pytorch'`` (PytorchEngineConfig) or ``'turbomind'`` (TurbomindEngineConfig).
        tp: tensor-parallel degree (number of GPUs).
        session_len: max tokens of prompt + completion; ``None``: the model's own limit.
        batch_size: how many sequences (conversations x copies) are submitted per pipeline
            call; LMDeploy batches them internally.
        chat_template: LMDeploy chat template name. ``'hf'`` (default): the tokenizer's own
            template, so prompts are exactly those of the transformers backend; ``None``:
            LMDeploy's guess from the model path (a built-in template may differ, e.g. in the
            default system header).
        log_level: LMDeploy's log level.
    """

    def __init__(self, model_path: str, engine: str = 'pytorch', tp: int = 1,
                 session_len: Optional[int] = None, batch_size: int = 256,
                 chat_template: Optional[str] = 'hf', log_level: str = 'WARNING'):
        import torch
        if engine not in ('pytorch', 'turbomind'):
            raise ValueError(f"engine must be 'pytorch' or 'turbomind', not {engine!r}")
        if not torch.cuda.is_available():
            raise RuntimeError('LMDeployBackend needs an NVIDIA GPU (torch.cuda.is_available() '
                               'is False); use the transformers backend on CPU, or the openai '
                               'backend against a `lmdeploy serve api_server` running elsewhere')
        from lmdeploy import (ChatTemplateConfig, PytorchEngineConfig, TurbomindEngineConfig,
                              pipeline)
        cfg_cls = PytorchEngineConfig if engine == 'pytorch' else TurbomindEngineConfig
        backend_config = cfg_cls(tp=tp, session_len=session_len)
        template = (ChatTemplateConfig(chat_template, model_path=model_path)
                    if chat_template else None)
        try:
            self.pipe = pipeline(model_path, backend_config=backend_config,
                                 chat_template_config=template, log_level=log_level)
        except SystemExit as e:  # LMDeploy exits instead of raising when it finds no GPU
            raise RuntimeError(f'LMDeploy could not start a {engine} engine for {model_path} '
                               f'(exit code {e.code})') from e
        self.model_path, self.batch_size = model_path, batch_size

    def generate(self, conversations: List[List[dict]], params: SamplingParams,
                 n: int = 1, seeds=None) -> List[List[str]]:
        """For each conversation, ``n`` completions (each prompt repeated n times; copy j of
        conversation i gets its own seed, generation/base.py)."""
        flat = [c for c in conversations for _ in range(n)]
        per_copy = copy_seeds(params, len(conversations), n, seeds)
        if per_copy is None:
            configs = [build_generation_config(params)] * len(flat)
        else:  # distinct seeds, or the n copies of a prompt would all be the same
            configs = [build_generation_config(dataclasses.replace(params, seed=s))
                       for row in per_copy for s in row]
        texts: List[str] = []
        for s in range(0, len(flat), self.batch_size):
            outs = self.pipe.batch_infer(flat[s:s + self.batch_size],
                                         gen_config=configs[s:s + self.batch_size])
            for k, o in enumerate(outs):
                reason = getattr(o, 'finish_reason', None)
                if reason not in (None, 'stop', 'length'):  # 'error': the text is a message
                    i = (s + k) // n
                    raise RuntimeError(f'LMDeploy engine error on conversation {i} (copy '
                                       f'{(s + k) % n}), finish_reason {reason!r}: '
                                       f'{o.text[:300]!r}')
                texts.append(Completion(o.text, reason))
        return [texts[i * n:(i + 1) * n] for i in range(len(conversations))]

    def choose(self, conversations: List[List[dict]], choices: List[str],
               max_new_tokens: int = 32) -> List[str]:
        """Greedy answers constrained to ``choices`` by LMDeploy's ``response_format``
        (a regular expression; generation/base.py)."""
        config = dataclasses.replace(build_generation_config(
            SamplingParams.greedy(max_new_tokens)), response_format={
                'type': 'regex_schema', 'regex_schema': choice_regex(choices)})
        outs = self.pipe.batch_infer(conversations, gen_config=[config] * len(conversations))
        return [check_choice(o.text, choices, 'LMDeploy pipeline') for o in outs]

    def close(self):
        self.pipe.close()
