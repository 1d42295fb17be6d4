"""The world's base model: a tokenizer and a tiny Llama trained here, on a CPU, in minutes.

Two kinds of text, mixed half and half in every batch:

* documents about *all* topics, rendered afresh each time (random templates and order; each
  attribute present with its own frequency, topics sampled by popularity) — the knowledge;
* question -> answer conversations about the ``sft`` topics only — the answer style (every
  attribute once, in random order). Preference data comes from other topics (``train``), kept at
  the same knowledge level as the held-out ``test`` topics, as the world-notes advise.

The model therefore knows easy attributes well, hard attributes of rare topics badly, and answers
every question in full: its answers mix correct and hallucinated sentences.
"""
import json
import os
import random
from dataclasses import asdict, dataclass

import torch

from maskdpo_xtuner.offline.tiny import build_tiny_llama, train_word_tokenizer
from maskdpo_xtuner.studies.world.world import QUESTIONS, World


@dataclass
class PretrainConfig:
    steps: int = 800
    batch_size: int = 64
    lr: float = 2e-3
    warmup: int = 50
    hidden_size: int = 128
    num_layers: int = 3
    intermediate_size: int = 384
    num_heads: int = 4
    seed: int = 0


def build_world_tokenizer(world: World):
    """One token per word of everything the world can write (each name is a single token, the
    same in the question and in the answer)."""
    rng = random.Random(0)
    corpus = world.corpus_words() + ['x\n\nx']
    corpus += [q['question'] for t in world.topics for ood in (False, True)
               for q in world.questions(t, ood)]
    corpus += [world.document(t, rng, full=True) for t in world.topics]
    corpus += [world.answer(t, rng) for t in world.topics]
    return train_word_tokenizer(corpus=corpus)


def _examples(world: World, tok, rng: random.Random):
    """An endless stream of (input_ids, labels): documents and answer-style conversations."""
    topics = world.topics
    weights = [t.popularity for t in topics]
    sft = world.split('sft')
    eos = tok.eos_token_id
    while True:
        if rng.random() < 0.5:
            topic = rng.choices(topics, weights)[0]
            ids = tok.encode(world.document(topic, rng), add_special_tokens=False) + [eos]
            yield ids, ids
        else:
            topic = rng.choice(sft)
            q = rng.choice(QUESTIONS[topic.kind]).format(s=topic.name)
            msgs = [{'role': 'user', 'content': q}]
            head = tok.apply_chat_template(msgs, add_generation_prompt=True)
            full = tok.apply_chat_template(
                msgs + [{'role': 'assistant', 'content': world.answer(topic, rng)}])
            yield full, [-100] * len(head) + full[len(head):]


def pretrain(world: World, out_dir: str, config: PretrainConfig = PretrainConfig(),
             progress: bool = True) -> str:
    """Train the base model and save it (with its tokenizer) as a Hugging Face folder."""
    from tqdm import tqdm
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    tok = build_world_tokenizer(world)
    model = build_tiny_llama(tok, hidden_size=config.hidden_size,
                             num_layers=config.num_layers, num_heads=config.num_heads,
                             intermediate_size=config.intermediate_size, seed=config.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / config.warmup))
    stream = _examples(world, tok, rng)
    model.train()
    losses = []
    bar = tqdm(range(config.steps), desc='pretrain base model', disable=not progress,
               mininterval=2)
    for _ in bar:
        batch = [next(stream) for _ in range(config.batch_size)]
        width = max(len(ids) for ids, _ in batch)
        ids = torch.tensor([x + [tok.pad_token_id] * (width - len(x)) for x, _ in batch])
        labels = torch.tensor([y + [-100] * (width - len(y)) for _, y in batch])
        mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x, _ in batch])
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        bar.set_postfix(loss=f'{sum(losses[-20:]) / len(losses[-20:]):.3f}')
    model.eval()
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    with open(os.path.join(out_dir, 'pretrain.json'), 'w') as f:
        json.dump({'config': asdict(config), 'final_loss': sum(losses[-50:]) / 50}, f, indent=1)
    return out_dir
