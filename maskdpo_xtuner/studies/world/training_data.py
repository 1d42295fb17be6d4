"""What a world study's models train on: the pairs, their subsets and their sources.

A mixin of ``study.Study`` (which holds the world, the base model, the seed folders and the
stage runner): a spec (settings.py) trains on the base model's own pairs of one training seed,
or on another source's pairs (sources.py, paper Table 3), cut to a data subset: a share of the
train topics or of each topic's questions (paper Table 4) or a near / far topic group
(neighbours.py, paper Table 5). Training is keyed by what it trains on (:meth:`training_data`).
"""
import copy
import dataclasses
import hashlib
import json
import os
import random
import sys
from typing import List

from maskdpo_xtuner.io.jsonl import read_jsonl
from maskdpo_xtuner.io.manifest import hash_file
from maskdpo_xtuner.pipeline.stages import ROOT, code_hash
from maskdpo_xtuner.studies.world.neighbours import group_topics, topic_groups
from maskdpo_xtuner.studies.world.sources import source_pairs, topic_id


class TrainingData:
    """Study methods that prepare and select training pairs (see the module docstring)."""

    @staticmethod
    def module_hash(obj) -> str:
        """code_hash of the source file of a module path, module, class or function."""
        path = obj if isinstance(obj, str) else sys.modules[getattr(obj, '__module__',
                                                                     obj.__name__)].__file__
        return code_hash([os.path.relpath(os.path.abspath(path), ROOT)])

    def sibling(self, base_seed: int):
        """The main study of this world with another base model (its world and base built)."""
        s = copy.deepcopy(self.s)
        s.pretrain = dataclasses.replace(s.pretrain, seed=base_seed)
        other = type(self)(s, self.top, self.seeds, 'main', self.eval_split)
        other.stages = self.stages  # one stage log
        other.build_world()
        other.build_base()
        return other

    @staticmethod
    def pairs_key(path: str) -> str:
        """Training is keyed by what it trains on: the content of its pairs file."""
        h = hashlib.sha256()
        hash_file(h, path)
        return 'pairs-' + h.hexdigest()[:16]

    def build_groups(self) -> str:
        """The near / far topic groups of this base model (neighbours.py), once."""
        if getattr(self, 'groups_key', None):
            return self.groups_key
        d = os.path.join(self.out, 'topic_groups')
        self.groups_file = os.path.join(d, 'groups.json')
        self.groups_key = self.stages.run('topic groups (near / far)', d,
                               {'base': self.base_key, 'world': self.world_key,
                                'code': self.module_hash(topic_groups)},
                               lambda: topic_groups(self.world, self.base_dir,
                                                    self.s.pretrain.seed, self.groups_file))
        return self.groups_key

    def training_data(self, sp: dict, seed: int, pairs_key: str) -> str:
        """Prepare what ``sp`` trains on (another source's pairs, the topic groups) and return
        its key: the content of the pairs it trains on."""
        key = pairs_key
        if sp.get('source'):
            pairs, annotated, key = source_pairs(self, sp['source'], seed)
            self.data_files[seed, sp['source']] = (pairs, annotated)
        if sp.get('group'):  # keyed by the subset itself: same pairs, same model
            self.build_groups()
            h = hashlib.sha256(json.dumps(self.subset_pairs(sp, seed), sort_keys=True).encode())
            key = 'pairs-' + h.hexdigest()[:16]
        return key

    def subset_pairs(self, sp: dict, seed: int) -> List[dict]:
        """The pairs of the spec's source (its own pairs by default) and data subset, chosen
        deterministically from the seed. A near / far group: the pairs of its topics, a seeded
        sample of as many as the smaller of the two groups has, so near and far train on equally
        many pairs. Scaling subsets, nested (1/3 of the topics within 2/3, 1 question within 2):
        the first share of each kind's train topics in a seeded order, or the first n of each
        topic's questions in a seeded per-topic order."""
        pairs = read_jsonl(self.data_files.get((seed, sp.get('source')), [self.pairs_file])[0])
        if sp.get('group'):
            side, _, kind = sp['group'].partition(':')
            groups = {x: group_topics(self.groups_file, f'{x}:{kind}') for x in ('near', 'far')}
            size = min(sum(topic_id(p['id']) in g for p in pairs) for g in groups.values())
            pairs = sorted((p for p in pairs if topic_id(p['id']) in groups[side]),
                           key=lambda p: p['id'])
            random.Random(f'group-{seed}-{sp["group"]}').shuffle(pairs)
            pairs = pairs[:size]
        if sp['topics'] is None and sp['questions'] is None:
            return pairs
        keep = set()
        for kind in sorted({t.kind for t in self.world.topics}):
            topics = sorted((t for t in self.world.split('train') if t.kind == kind),
                            key=lambda t: t.id)
            random.Random(f'scaling-{seed}-{kind}').shuffle(topics)
            if sp['topics'] is not None:
                a, b = map(int, sp['topics'].split('/'))
                topics = topics[:round(len(topics) * a / b)]
            for topic in topics:
                qids = [q['id'] for q in self.world.questions(topic)]
                random.Random(f'scaling-{seed}-{kind}-{topic.id}').shuffle(qids)
                keep.update(qids[:sp['questions'] or len(qids)])
        return [p for p in pairs if p['id'] in keep]
