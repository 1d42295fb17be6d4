"""The LM head by chunks (``chunked_lm_head``, model/logps.py): the numbers of the naive way,
without ever holding the [batch, length, vocabulary] logits."""
import pytest
import torch
from peft import LoraConfig
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import AutoModelForCausalLM, AutoTokenizer

from conftest import SAMPLE, hf, twin_models
from maskdpo_xtuner.dataset import PackedPairs, build_maskdpo_dataset, maskdpo_collate_fn
from maskdpo_xtuner.model import MaskDPO, head_logps
from maskdpo_xtuner.model import logps as logps_module
from maskdpo_xtuner.model.loss import token_logps
from maskdpo_xtuner.model.reference import compute_ref_logps

LORA = dict(type=LoraConfig, r=4, lora_alpha=8, lora_dropout=0.0, bias='none',
            task_type='CAUSAL_LM')


@pytest.fixture(scope='module', autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def data(tiny_model_dir):
    return build_maskdpo_dataset(SAMPLE, AutoTokenizer.from_pretrained(tiny_model_dir), 256,
                                 progress=False)


@pytest.fixture(scope='module')
def tied_model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model with its LM head tied to its input embeddings."""
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.config.tie_word_embeddings = True
    model.tie_weights()
    out = str(tmp_path_factory.mktemp('tied') / 'model')
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(out)
    return out


def naive_logps(logits, labels):
    lab = labels[:, 1:]
    out = logits[:, :-1].log_softmax(-1).gather(-1, lab.clamp(min=0)[..., None]).squeeze(-1)
    return out * (lab != -100)


# ---------------------------------------------------------------------------- the function
@pytest.mark.parametrize('frozen_head', [False, True])
def test_head_logps_equal_naive_values_and_gradients(frozen_head):
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(4, 11, 6, generator=g, dtype=torch.float64, requires_grad=True)
    head = torch.nn.Linear(6, 60, bias=False, dtype=torch.float64)
    head.weight.requires_grad_(not frozen_head)
    labels = torch.randint(0, 60, (4, 11), generator=g)
    labels[:, :3] = -100
    labels[1, -2:] = -100
    labels[0, 5] = labels[3, 8] = 0  # id 0 is a real token ('!' in Llama-3)
    weights = torch.randn(4, 10, generator=g, dtype=torch.float64)
    chunked = head_logps(hidden, head, labels, chunk_tokens=3)  # chunks smaller than the rows
    (chunked * weights).sum().backward()
    grads = hidden.grad, head.weight.grad
    hidden.grad = head.weight.grad = None
    naive = naive_logps(head(hidden), labels)
    (naive * weights).sum().backward()
    torch.testing.assert_close(chunked, naive, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grads[0], hidden.grad, rtol=1e-12, atol=1e-12)
    if frozen_head:
        assert grads[1] is None and head.weight.grad is None
    else:
        torch.testing.assert_close(grads[1], head.weight.grad, rtol=1e-12, atol=1e-12)
    assert chunked[0, 4] != 0 and grads[0][0, 4].abs().sum() > 0  # the id-0 label is scored
    assert torch.all(grads[0][:, :2] == 0)  # unlabelled positions get no gradient
    assert 'forward' not in vars(head)  # the head's own forward is back


# ---------------------------------------------------------------------------- the model
def chunked_and_plain(model_dir, **kw):
    """(chunked, plain) MaskDPO twins in float64: one formula, so float64 rounding apart."""
    return twin_models(model_dir, 4, {'chunked_lm_head': False}, dtype=torch.float64, **kw)


def assert_same_step(a, b, batch_a, batch_b=None):
    out_a = a.compute_loss(dict(batch_a))
    out_b = b.compute_loss(dict(batch_b or batch_a))
    for key in out_a:
        assert out_a[key].item() == pytest.approx(out_b[key].item(), rel=1e-10, abs=1e-12), key
    out_a['loss'].backward()
    out_b['loss'].backward()
    trained = 0
    for (name, p), q in zip(a.llm.named_parameters(), b.llm.parameters()):
        assert (p.grad is not None) == (q.grad is not None) == p.requires_grad, name
        if p.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-9, atol=1e-12, msg=name)
            trained += 1
    assert trained > 0


@pytest.mark.parametrize('setting', ['plain', 'lora', 'activation_checkpointing'])
def test_chunked_head_equals_model_forward(tiny_model_dir, data, setting):
    kw = {'lora': {'lora': LORA}, 'activation_checkpointing': {
        'use_activation_checkpointing': True}}.get(setting, {})
    chunked, plain = chunked_and_plain(tiny_model_dir, mask_mode='both', **kw)
    if setting == 'activation_checkpointing':
        for m in (chunked, plain):
            m.train()  # Hugging Face checkpoints only in training mode
        assert chunked.llm.is_gradient_checkpointing
    if setting == 'lora':
        assert chunked.ref_llm is None  # the reference is the adapter switched off
    assert_same_step(chunked, plain, maskdpo_collate_fn(data.items[:6])['data'])


def test_chunked_head_with_tied_embeddings(tied_model_dir, data):
    chunked, plain = chunked_and_plain(tied_model_dir)
    llm = chunked.llm
    assert llm.get_output_embeddings().weight is llm.get_input_embeddings().weight
    assert_same_step(chunked, plain, maskdpo_collate_fn(data.items[:6])['data'])


def test_chunked_head_on_packed_rows(tiny_model_dir, data):
    chunked, plain = chunked_and_plain(tiny_model_dir, use_varlen_attn=True, lora=LORA)
    pack = PackedPairs(data, max_packed_length=1024, seed=0)[0]
    assert len(pack['pairs']) >= 4
    batch = maskdpo_collate_fn([pack], use_varlen_attn=True)['data']
    assert_same_step(chunked, plain, batch, dict(batch))


def test_cache_pass_chunked_equals_model_forward(tiny_model_dir, data):
    reference = AutoModelForCausalLM.from_pretrained(tiny_model_dir, torch_dtype=torch.float64)
    a = compute_ref_logps(reference, data.items[:5], batch_size=2, progress=False)
    b = compute_ref_logps(reference, data.items[:5], batch_size=2, progress=False,
                          chunked_lm_head=False)
    for i in a:
        for x, y in zip(a[i], b[i]):
            torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-12)


def test_heads_it_cannot_chunk_are_refused_at_build(tiny_model_dir):
    with pytest.raises(ValueError, match='an adapter on lm_head.*chunked_lm_head=False'):
        MaskDPO(hf(tiny_model_dir), lora=dict(LORA, target_modules=['q_proj', 'lm_head']),
                use_activation_checkpointing=False)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.config.final_logit_softcapping = 30.0
    with pytest.raises(ValueError, match=r'config.final_logit_softcapping=30.0 changes them'):
        logps_module.split_head(model)


# ---------------------------------------------------------------------------- memory
class LargestTensor(TorchDispatchMode):
    """Records the largest floating-point tensor any operation creates, overall and among those
    whose last dimension is the vocabulary (logits, their gradient, chunks of either)."""

    def __init__(self, vocab):
        super().__init__()
        self.vocab, self.numel, self.logit_numel = vocab, 0, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.is_view:  # a view (e.g. weight.T) allocates nothing
            return out
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor) and t.is_floating_point():
                self.numel = max(self.numel, t.numel())
                if t.dim() and t.shape[-1] == self.vocab:
                    self.logit_numel = max(self.logit_numel, t.numel())
        return out


def test_no_batch_by_length_by_vocab_tensor_in_a_training_step(tiny_model_dir, data,
                                                               monkeypatch):
    """A MaskDPO step (online reference, then the policy, forward and backward) and the cache
    pass: the largest logit-shaped tensor is one chunk; the old way holds B x T x V ones."""
    chunk = 16
    chunked, plain = twin_models(tiny_model_dir, 4, {'chunked_lm_head': False})
    vocab = chunked.llm.config.vocab_size
    monkeypatch.setattr(logps_module, 'CHUNK_ELEMENTS', chunk * vocab)
    batch = maskdpo_collate_fn(data.items[:6])['data']
    full = batch['input_ids'].numel() * vocab  # B x T x V
    seen = {}
    for name, model in (('chunked', chunked), ('plain', plain)):
        with LargestTensor(vocab) as seen[name]:
            model.compute_loss({k: v.clone() for k, v in batch.items()})['loss'].backward()
    assert seen['chunked'].logit_numel <= chunk * vocab  # one chunk, forward and backward
    assert seen['chunked'].numel < full  # no tensor of B x T x V elements, of any shape
    assert seen['plain'].logit_numel >= full  # the measurement can tell: the old way fails it
    for chunked_lm_head in (True, False):
        with LargestTensor(vocab) as cache_pass:
            compute_ref_logps(chunked.ref_llm, data.items[:6], batch_size=6, progress=False,
                              chunked_lm_head=chunked_lm_head)
        assert (cache_pass.logit_numel <= chunk * vocab) == chunked_lm_head


# ---------------------------------------------------------------------------- ZeRO-3
class Zero3Like:
    """ZeRO-3's contract with one module, simulated: its weight is an empty placeholder except
    from the module's forward pre-hook to its forward hook, and from the backward of its output
    to the gradient of its input (DeepSpeed's hooks and Pre/PostBackwardFunction). As in
    DeepSpeed, the gradient accumulator is made while the weight is whole."""

    def __init__(self, module):
        self.weight, self.full = module.weight, module.weight.data
        self.accumulator = self.weight.expand_as(self.weight).grad_fn.next_functions[0][0]
        self.gathers = 0
        self.release()
        module.register_forward_pre_hook(self.before_forward)
        module.register_forward_hook(self.after_forward)

    def gather(self):
        self.gathers += 1
        self.weight.data = self.full

    def release(self):
        self.weight.data = torch.empty(0, dtype=self.full.dtype)

    def before_forward(self, module, args):
        self.gather()
        return tuple(_OnBackward.apply(a, self.release) if torch.is_tensor(a) and a.requires_grad
                     else a for a in args)

    def after_forward(self, module, args, out):
        self.release()
        return _OnBackward.apply(out, self.gather) if out.requires_grad else out


class _OnBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, hook):
        ctx.hook = hook
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        ctx.hook()
        return grad, None


def test_partitioned_head_weight_is_used_only_where_zero3_gathers_it(tiny_model_dir, data):
    """Up to the GPU boundary: the head weight is read only inside the head module's forward and
    the backward of its output, where ZeRO-3 has it whole; its gradient arrives whole."""
    chunked, plain = twin_models(tiny_model_dir, 4, {'chunked_lm_head': False},
                                 dtype=torch.float64)
    batch = maskdpo_collate_fn(data.items[:6])['data']
    zero = Zero3Like(chunked.llm.lm_head)
    out = chunked.compute_loss(dict(batch))
    assert zero.gathers == 1 and chunked.llm.lm_head.weight.numel() == 0
    out['loss'].backward()
    assert zero.gathers == 2 and chunked.llm.lm_head.weight.numel() == 0
    ref = plain.compute_loss(dict(batch))
    ref['loss'].backward()
    assert out['loss'].item() == pytest.approx(ref['loss'].item(), rel=1e-10)
    torch.testing.assert_close(chunked.llm.lm_head.weight.grad, plain.llm.lm_head.weight.grad,
                               rtol=1e-9, atol=1e-12)


@pytest.mark.gpu
def test_zero3_chunked_head_equals_plain_on_gpu(tiny_model_dir, data):
    deepspeed = pytest.importorskip('deepspeed')
    import torch.distributed as dist
    from deepspeed.utils import safe_get_full_grad
    if not dist.is_initialized():
        dist.init_process_group('nccl', init_method='tcp://127.0.0.1:29534', rank=0,
                                world_size=1)
    chunked, plain = twin_models(tiny_model_dir, 4, {'chunked_lm_head': False})
    params = [p for p in chunked.parameters() if p.requires_grad]
    engine, *_ = deepspeed.initialize(
        model=chunked.cuda(), optimizer=torch.optim.SGD(params, lr=0.0),
        config={'train_micro_batch_size_per_gpu': 1, 'zero_optimization': {'stage': 3}})
    head = engine.module.llm.lm_head.weight
    assert hasattr(head, 'ds_id') and head.numel() == 0  # partitioned between uses
    batch = {k: v.cuda() for k, v in maskdpo_collate_fn(data.items[:6])['data'].items()}
    out = engine(dict(batch), mode='loss')
    engine.backward(out['loss'])
    plain = plain.cuda()
    ref = plain.compute_loss(dict(batch))
    ref['loss'].backward()
    assert out['loss'].item() == pytest.approx(ref['loss'].item(), rel=1e-4)
    for (name, p), q in zip(engine.module.llm.named_parameters(), plain.llm.parameters()):
        torch.testing.assert_close(safe_get_full_grad(p), q.grad, rtol=1e-3, atol=1e-6,
                                   msg=name)


# ---------------------------------------------------------------- token_logps (from logits)
def naive_logps_fp32(logits, labels):
    lab = labels[:, 1:]
    out = logits[:, :-1].float().log_softmax(-1).gather(-1, lab.clamp(min=0)[..., None])
    return out.squeeze(-1) * (lab != -100)


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_lean_logps_equal_naive_values_and_gradients(dtype):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 11, 60, generator=g).to(dtype).requires_grad_(True)
    labels = torch.randint(0, 60, (4, 11), generator=g)
    labels[:, :3] = -100
    labels[1, -2:] = -100
    labels[0, 5] = labels[3, 8] = 0  # id 0 is a real token ('!' in Llama-3)
    weights = torch.randn(4, 10, generator=g)
    lean = token_logps(logits, labels, chunk_tokens=3)  # chunks smaller than the rows
    (lean * weights).sum().backward()
    lean_grad, logits.grad = logits.grad, None
    naive = naive_logps_fp32(logits, labels)
    (naive * weights).sum().backward()
    torch.testing.assert_close(lean, naive, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(lean_grad, logits.grad, rtol=1e-6, atol=1e-6)
    assert lean[0, 4] != 0 and lean_grad[0, 4].abs().sum() > 0  # the id-0 label is scored
    assert torch.all(lean_grad[:, :2] == 0)  # unlabelled positions get no gradient


class LargestFloat(TorchDispatchMode):
    """Records the largest fp32 tensor any operation creates."""

    def __init__(self):
        super().__init__()
        self.numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor) and t.dtype == torch.float32:
                self.numel = max(self.numel, t.numel())
        return out


def test_lean_logps_never_hold_a_full_vocab_fp32_copy():
    vocab, chunk = 500, 4
    logits = torch.randn(2, 16, vocab).bfloat16().requires_grad_(True)
    labels = torch.randint(0, vocab, (2, 16))
    with LargestFloat() as lean:
        token_logps(logits, labels, chunk_tokens=chunk).sum().backward()
    assert lean.numel <= chunk * vocab  # policy: forward and backward, a chunk at a time
    with torch.no_grad(), LargestFloat() as ref:
        token_logps(logits, labels, chunk_tokens=chunk)
    assert ref.numel <= chunk * vocab
    with LargestFloat() as naive:  # the measurement can tell: the naive way fails it
        naive_logps_fp32(logits, labels).sum().backward()
    assert naive.numel >= logits.numel() // 2
