"""Generation with plain ``transformers`` (``model.generate``): works on CPU, used by tests and
small jobs. Slow for real models; use the LMDeploy or OpenAI backends for the paper's runs.

Seeded sampling draws every row from its own ``torch.Generator`` (:class:`RowSampler`: the
temperature / top-k / top-p filters, then Gumbel noise, then the argmax of greedy decoding, which
is a draw from the filtered distribution), so a row's answer depends on its seed only, not on
the other rows of its batch. Unseeded sampling is ``generate``'s own.
"""
from typing import List, Optional, Sequence, Union

from maskdpo_xtuner.generation.base import Completion, SamplingParams, copy_seeds


class RowSampler:
    """A ``LogitsProcessor`` that turns greedy decoding into per-row seeded sampling."""

    def __init__(self, params: SamplingParams, row_seeds: Sequence[int]):
        import torch
        from transformers import (MinPLogitsWarper, TemperatureLogitsWarper, TopKLogitsWarper,
                                  TopPLogitsWarper)
        self.warpers = [TemperatureLogitsWarper(params.temperature)]  # the order of generate()
        if params.top_k and params.top_k > 0:
            self.warpers.append(TopKLogitsWarper(params.top_k))
        if params.top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(params.top_p))
        if params.min_p:
            self.warpers.append(MinPLogitsWarper(params.min_p))
        self.generators = [torch.Generator().manual_seed(s) for s in row_seeds]

    def __call__(self, input_ids, scores):
        import torch
        scores = scores.float()
        for w in self.warpers:
            scores = w(input_ids, scores)
        u = torch.stack([torch.rand(scores.shape[-1], generator=g, dtype=torch.float64)
                         for g in self.generators])
        gumbel = -torch.log(-torch.log(u.clamp(min=1e-300)))
        return scores + gumbel.to(scores.device, torch.float32)


class TransformersBackend:
    """Chat completion with a Hugging Face causal LM.

    Args:
        model_path_or_model: a HF model folder / hub id (loaded with ``AutoModelForCausalLM``)
            or an already loaded model.
        tokenizer: tokenizer with a chat template; loaded from ``model_path_or_model`` when None
            (required when a model object is given). Its padding side is set to left.
        batch_size: how many sequences (conversations x copies) go through ``generate`` at once.
        device: torch device the model runs on.
        dtype: torch dtype to load the model in (``None``: the checkpoint's own / float32).
    """

    def __init__(self, model_path_or_model: Union[str, object], tokenizer=None,
                 batch_size: int = 16, device: str = 'cpu', dtype=None):
        from transformers import AutoModelForCausalLM, AutoTokenizer
        if isinstance(model_path_or_model, str):
            model = AutoModelForCausalLM.from_pretrained(model_path_or_model,
                                                         torch_dtype=dtype or 'auto')
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(model_path_or_model)
        else:
            model = model_path_or_model
            if tokenizer is None:
                raise ValueError('a tokenizer is required when a model object is given')
            if dtype is not None:
                model = model.to(dtype)
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = 'left'
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.batch_size = batch_size
        self.device = device
        # stop at the tokenizer's eos and at every eos the model's generation config lists
        # (Llama-3 Instruct: <|eot_id|> ends a turn, <|end_of_text|> the document)
        model_eos = getattr(getattr(model, 'generation_config', None), 'eos_token_id', None)
        model_eos = [model_eos] if isinstance(model_eos, int) else list(model_eos or [])
        self.eos_token_ids = list(dict.fromkeys([self.tokenizer.eos_token_id] + model_eos))

    def _generate_kwargs(self, params: SamplingParams) -> dict:
        if params.presence_penalty or params.frequency_penalty:
            raise ValueError('the transformers backend has no presence/frequency penalty; '
                             f'got {params.presence_penalty}/{params.frequency_penalty}')
        # repetition_penalty and min_p explicit too: model.generate would otherwise take them
        # from the model folder's generation_config.json
        kw = dict(max_new_tokens=params.max_new_tokens, do_sample=params.do_sample,
                  eos_token_id=self.eos_token_ids, pad_token_id=self.tokenizer.pad_token_id,
                  repetition_penalty=params.repetition_penalty)
        if params.do_sample:
            kw.update(top_k=params.top_k, temperature=params.temperature, top_p=params.top_p,
                      min_p=params.min_p or None)
        else:  # neutral values: the model's generation_config must not re-enable any filter
            kw.update(top_k=None, temperature=None, top_p=None, min_p=None)
        return kw

    def prompt_tokens(self, conversations: List[List[dict]]):
        """(token count of each rendered prompt, the model's context size in tokens), for
        the pipeline's length check before generating (maskdpo_xtuner/pipeline/context.py)."""
        cfg = getattr(self.model, 'config', None)
        limit = getattr(cfg, 'max_position_embeddings', None) or self.tokenizer.model_max_length
        return [len(self.tokenizer.apply_chat_template(c, tokenize=True,
                                                       add_generation_prompt=True))
                for c in conversations], int(limit)

    def choose(self, conversations: List[List[dict]], choices: List[str],
               max_new_tokens: int = 32) -> List[str]:
        """For each conversation, the choice whose whole answer (its tokens, then the end of
        the turn) has the highest log-probability under the model (generation/base.py)."""
        import torch
        eos = self.eos_token_ids[0]
        rows = []  # (conversation, prompt ids, answer ids)
        for i, conv in enumerate(conversations):
            prompt = self.tokenizer.apply_chat_template(conv, tokenize=True,
                                                        add_generation_prompt=True)
            for c in choices:
                answer = self.tokenizer(c, add_special_tokens=False)['input_ids'] + [eos]
                rows.append((i, list(prompt), answer))
        scores = []
        pad = self.tokenizer.pad_token_id
        for start in range(0, len(rows), self.batch_size):
            part = rows[start:start + self.batch_size]
            seqs = [p + a for _, p, a in part]
            width = max(map(len, seqs))
            ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs])
            mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
            with torch.no_grad():
                logits = self.model(input_ids=ids.to(self.device),
                                    attention_mask=mask.to(self.device)).logits.float()
            logp = torch.log_softmax(logits, -1).cpu()
            for k, (_, p, a) in enumerate(part):
                pos = torch.arange(len(p) - 1, len(p) + len(a) - 1)
                scores.append(float(logp[k, pos, torch.tensor(a)].sum()))
        n = len(choices)
        return [choices[max(range(n), key=lambda j: scores[i * n + j])]
                for i in range(len(conversations))]

    def generate(self, conversations: List[List[dict]], params: SamplingParams,
                 n: int = 1, seeds: Optional[Sequence[int]] = None) -> List[List[str]]:
        """For each conversation (a list of ``{'role', 'content'}``), ``n`` completions of the
        assistant turn, decoded without special tokens (seeds: generation/base.py)."""
        import torch
        from transformers import LogitsProcessorList
        per_copy = copy_seeds(params, len(conversations), n, seeds) if params.do_sample else None
        row_seeds = None if per_copy is None else [s for row in per_copy for s in row]
        prompts = [self.tokenizer.apply_chat_template(c, tokenize=False,
                                                      add_generation_prompt=True)
                   for c in conversations]
        flat = [p for p in prompts for _ in range(n)]  # copy i*n+j is copy j of conversation i
        kw = self._generate_kwargs(params)
        texts: List[str] = []
        eos = torch.tensor(self.eos_token_ids)
        for start in range(0, len(flat), self.batch_size):
            enc = self.tokenizer(flat[start:start + self.batch_size], return_tensors='pt',
                                 padding=True, add_special_tokens=False,
                                 return_token_type_ids=False).to(self.device)
            step = dict(kw)
            if row_seeds is not None:  # seeded: each row with its own generator
                step.update(do_sample=False, top_k=None, temperature=None, top_p=None, min_p=None,
                            logits_processor=LogitsProcessorList([RowSampler(
                                params, row_seeds[start:start + self.batch_size])]))
            with torch.no_grad():
                out = self.model.generate(**enc, **step)
            new = out[:, enc['input_ids'].shape[1]:]
            ended = torch.isin(new.cpu(), eos).any(-1).tolist()  # else cut at max_new_tokens
            texts += [Completion(t, 'stop' if e else 'length') for t, e in
                      zip(self.tokenizer.batch_decode(new, skip_special_tokens=True), ended)]
        return [texts[i * n:(i + 1) * n] for i in range(len(conversations))]
