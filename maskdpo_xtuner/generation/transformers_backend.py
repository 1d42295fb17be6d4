"""Generation with plain ``transformers`` (``model.generate``): works on CPU, used by tests and
small jobs. Slow for real models; use the LMDeploy or OpenAI backends for the paper's runs."""
from typing import List, Union

from .base import Completion, SamplingParams


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
        kw = dict(max_new_tokens=params.max_new_tokens, do_sample=params.do_sample,
                  eos_token_id=self.eos_token_ids, pad_token_id=self.tokenizer.pad_token_id)
        if params.do_sample:
            kw.update(top_k=params.top_k, temperature=params.temperature, top_p=params.top_p)
        else:  # neutral values: the model's generation_config must not re-enable any filter
            kw.update(top_k=None, temperature=None, top_p=None)
        return kw

    def prompt_tokens(self, conversations: List[List[dict]]):
        """(token count of each rendered prompt, the model's context size in tokens), for
        the pipeline's length check before generating (maskdpo_xtuner/pipeline/context.py)."""
        cfg = getattr(self.model, 'config', None)
        limit = getattr(cfg, 'max_position_embeddings', None) or self.tokenizer.model_max_length
        return [len(self.tokenizer.apply_chat_template(c, tokenize=True,
                                                       add_generation_prompt=True))
                for c in conversations], int(limit)

    def generate(self, conversations: List[List[dict]], params: SamplingParams,
                 n: int = 1) -> List[List[str]]:
        """For each conversation (a list of ``{'role', 'content'}``), ``n`` completions of the
        assistant turn, decoded without special tokens."""
        import torch
        if params.seed is not None:
            torch.manual_seed(params.seed)
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
            with torch.no_grad():
                out = self.model.generate(**enc, **kw)
            new = out[:, enc['input_ids'].shape[1]:]
            ended = torch.isin(new.cpu(), eos).any(-1).tolist()  # else cut at max_new_tokens
            texts += [Completion(t, 'stop' if e else 'length') for t, e in
                      zip(self.tokenizer.batch_decode(new, skip_special_tokens=True), ended)]
        return [texts[i * n:(i + 1) * n] for i in range(len(conversations))]
