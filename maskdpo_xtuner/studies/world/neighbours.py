"""Paper Table 5 in the world: train on topics *near* the test topics or *far* from them.

The paper embeds every topic, takes the test topics as cluster centres, assigns each training
topic to its nearest centre and splits the training topics by that distance into a near and a far
group of equal size; Mask-DPO trained on the near group beats the far group by 2.4-4.5 points when
the embedding is the policy model's own, by 0.2-1.3 with other embeddings or a random one
(paper.md §5, Table 5). Here the embeddings are:

* ``model-name``: the base model's last hidden layer over the topic's name, mean-pooled over its
  tokens (a name is one word token; an event's name is two);
* ``model-document``: the same over the topic's reference document (every true fact, in the
  answer templates), mean-pooled;
* ``world-structure``: what the world says topics share, with no model involved: one binary
  feature per (value type, value) a topic has (a year, a city, an award, ...), its own name
  under its kind (so a person employed by organisation O shares the feature ``organisation=O``
  with O itself) and its kind; cosine similarity of these vectors;
* ``random``: a Gaussian vector per topic (the control: what a near/far split means by chance).

Distance = 1 - cosine similarity. A train topic's distance is the one to its nearest test topic.
Within each kind the train topics are sorted by it (ties by topic id); the first half is *near*,
the last half *far* (the middle topic of an odd count is left out), so both groups have the same
size and the same mix of kinds. Each group trains on the pairs of its topics (all questions).
"""
import hashlib
import json
import os
from typing import Dict, List

import numpy as np

from maskdpo_xtuner.studies.world.world import KINDS, World

EMBEDDINGS = ('model-name', 'model-document', 'world-structure', 'random')


def model_embeddings(model_dir: str, texts: Dict[str, str], batch_size: int = 32
                     ) -> Dict[str, np.ndarray]:
    """{key: mean over the text's tokens of the model's last hidden layer} (float64)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    keys, out = list(texts), {}
    for i in range(0, len(keys), batch_size):
        chunk = keys[i:i + batch_size]
        ids = [tok.encode(texts[k], add_special_tokens=False) for k in chunk]
        width = max(len(x) for x in ids)
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        batch = torch.tensor([x + [pad] * (width - len(x)) for x in ids])
        mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids])
        with torch.no_grad():
            hidden = model(input_ids=batch, attention_mask=mask,
                           output_hidden_states=True).hidden_states[-1].double()
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        out.update({k: v.numpy() for k, v in zip(chunk, pooled)})
    return out


def structure_features(world: World) -> Dict[str, set]:
    """{topic id: the set of features it has} (see the module docstring)."""
    out = {}
    for t in world.topics:
        feats = {f'kind={t.kind}', f'{t.kind}={t.name}'}
        for attr, (vtype, *_rest) in KINDS[t.kind].items():
            feats.add(f'{vtype}={t.facts[attr]}')
        out[t.id] = feats
    return out


def structure_embeddings(world: World) -> Dict[str, np.ndarray]:
    feats = structure_features(world)
    vocab = {f: i for i, f in enumerate(sorted(set().union(*feats.values())))}
    out = {}
    for tid, fs in feats.items():
        v = np.zeros(len(vocab))
        v[[vocab[f] for f in fs]] = 1.0
        out[tid] = v
    return out


def random_embeddings(world: World, seed: int, dim: int = 64) -> Dict[str, np.ndarray]:
    rng = np.random.default_rng(int(hashlib.sha256(f'nearfar-{seed}'.encode()).hexdigest()[:8],
                                    16))
    return {t.id: rng.standard_normal(dim) for t in world.topics}


def embeddings(world: World, model_dir: str, kind: str, seed: int) -> Dict[str, np.ndarray]:
    if kind == 'model-name':
        return model_embeddings(model_dir, {t.id: t.name for t in world.topics})
    if kind == 'model-document':
        return model_embeddings(model_dir, {t.id: world.reference_document(t)
                                            for t in world.topics})
    if kind == 'world-structure':
        return structure_embeddings(world)
    if kind == 'random':
        return random_embeddings(world, seed)
    raise ValueError(f'unknown embedding {kind!r}: one of {EMBEDDINGS}')


def nearest_distance(emb: Dict[str, np.ndarray], train: List[str], test: List[str]
                     ) -> Dict[str, float]:
    """{train topic: cosine distance to its nearest test topic}."""
    def unit(ids):
        m = np.stack([emb[i] for i in ids]).astype(np.float64)
        return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)
    sims = unit(train) @ unit(test).T
    return {tid: float(1.0 - s) for tid, s in zip(train, sims.max(1))}


def split_near_far(world: World, dist: Dict[str, float]) -> Dict[str, List[str]]:
    """Equal halves per kind: the nearer half of each kind's train topics, and the farther."""
    near, far = [], []
    for kind in KINDS:
        ids = sorted((t.id for t in world.split('train') if t.kind == kind),
                     key=lambda i: (dist[i], i))
        half = len(ids) // 2
        near += ids[:half]
        far += ids[len(ids) - half:]
    return {'near': near, 'far': far}


def topic_groups(world: World, model_dir: str, seed: int, out_path: str) -> dict:
    """Near and far groups for every embedding, their mean distances and how much the
    embeddings agree (share of one's near topics that are near in another), to ``out_path``."""
    train = [t.id for t in world.split('train')]
    test = [t.id for t in world.split('test')]
    groups = {}
    for kind in EMBEDDINGS:
        dist = nearest_distance(embeddings(world, model_dir, kind, seed), train, test)
        g = split_near_far(world, dist)
        groups[kind] = {**g, **{f'{side}_distance': float(np.mean([dist[i] for i in g[side]]))
                                for side in ('near', 'far')}}
    agree = {a: {b: len(set(groups[a]['near']) & set(groups[b]['near'])) / len(groups[a]['near'])
                 for b in EMBEDDINGS} for a in EMBEDDINGS}
    doc = {'groups': groups, 'near_agreement': agree, 'train_topics': len(train),
           'test_topics': len(test)}
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    with open(out_path, 'w', encoding='utf-8') as f:
        json.dump(doc, f, indent=1)
    return doc


def group_topics(groups_path: str, group: str) -> set:
    """The topic ids of a spec's group, 'near:<embedding>' or 'far:<embedding>'."""
    side, _, kind = group.partition(':')
    with open(groups_path, encoding='utf-8') as f:
        groups = json.load(f)['groups']
    if side not in ('near', 'far') or kind not in groups:
        raise ValueError(f'unknown topic group {group!r}: near:<embedding> or far:<embedding>, '
                         f'embeddings {sorted(groups)}')
    return set(groups[kind][side])
