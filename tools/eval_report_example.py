"""Build the example report of docs/evaluation.md: two scripted policies answer the synthetic
world's test questions, the world's exact oracle labels the sentences, tools/eval_anah.py
scores each policy over two sampling seeds and tools/report.py compares them.

    python tools/eval_report_example.py --out-dir work_dirs/eval_example

No model is trained or loaded: the policies are scripts (deterministic given the seed), so the
numbers illustrate the report, not Mask-DPO. ``base`` states every attribute of the topic and
gets each wrong (a neighbour's value) with a probability that grows as the attribute gets
rarer in the world's documents; ``concise`` makes the same draws but drops 75% of the
sentences it would get wrong and 20% of the right ones about rare attributes (shorter and more
precise, the pattern the paper reports for Mask-DPO). The FActScore table is built from the
same oracle labels (each claim sentence is one atomic fact, supported iff ``ok``) to show its
format; it is not a FActScore run.
"""
import json
import os
import random
import subprocess
import sys

from maskdpo_xtuner.evaluation.factscore import aggregate as factscore_aggregate
from maskdpo_xtuner.io.jsonl import read_jsonl, write_jsonl
from maskdpo_xtuner.io.manifest import content_hash
from maskdpo_xtuner.pipeline import EvalSettings, evaluate_anah
from maskdpo_xtuner.studies.world.oracle import WorldOracle
from maskdpo_xtuner.studies.world.world import KINDS, OPENER, World
from maskdpo_xtuner.cli import tool_parser
from maskdpo_xtuner.io.errors import tool_main


class ScriptedPolicy:
    """A ``generate`` backend answering world questions from the topic's facts."""

    def __init__(self, world: World, style: str):
        self.world, self.style = world, style
        self.by_question = {q['question']: t for t in world.topics for q in world.questions(t)}

    def answer(self, topic, seed) -> str:
        rng = random.Random(f'{topic.id}-{seed}')   # the same draws for both styles
        others = [t for t in self.world.topics if t.kind == topic.kind and t is not topic]
        sents = [OPENER.format(s=topic.name)]
        for attr, (_, freq, template, _) in KINDS[topic.kind].items():
            wrong = rng.random() < 0.1 + 0.6 * (1 - freq)
            keep_draw = rng.random()
            value = topic.facts[attr]
            if wrong:
                value = next((o.facts[attr] for o in rng.sample(others, len(others))
                              if o.facts[attr] != value), value)
            if self.style == 'concise' and (wrong and keep_draw < 0.75
                                            or not wrong and freq < 0.7 and keep_draw < 0.2):
                continue
            sents.append(template.format(s=topic.name, v=value))
        return ' '.join(sents)

    def generate(self, conversations, params, n=1, seeds=None):
        return [[self.answer(self.by_question[c[-1]['content']], params.seed)
                 for _ in range(n)] for c in conversations]


def factscore_fixture(annotated_path: str, out_dir: str, gamma: float) -> None:
    """factscore.json from oracle labels: a claim sentence is a fact, supported iff ok."""
    details = []
    for rec in read_jsonl(annotated_path):
        labels = [s['label'] for s in rec['annotations'][0]['sentences']
                  if s['label'] != 'nofact']
        sup = labels.count('ok')
        details.append({'key': rec['id'], 'topic': rec['topic'], 'abstained': False,
                        'n_facts': len(labels), 'n_supported': sup,
                        'n_not_supported': len(labels) - sup, 'n_unparsed': 0,
                        'sentences': []})
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, 'factscore.json'), 'w', encoding='utf-8') as f:
        json.dump({'metrics': factscore_aggregate(details, gamma),
                   'config': {'judge': {'name': 'world oracle (fixture)', 'kind': 'exact'},
                              'knowledge': {'path': 'world reference documents',
                                            'sha256': content_hash(sorted(
                                                d['topic'] for d in details))},
                              'extract_prompt': {'file': 'none: one sentence = one fact',
                                                 'sha256': content_hash('one sentence')},
                              'verify_prompt': {'file': 'none: the oracle label',
                                                'sha256': content_hash('oracle')}}}, f,
                  indent=1)


@tool_main
def main(argv=None) -> str:
    p = tool_parser(__doc__)
    p.add_argument('--out-dir', default='work_dirs/eval_example')
    p.add_argument('--n-topics', type=int, default=60)
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1])
    args = p.parse_args(argv)
    world = World.generate()
    topics = world.split('test')[:args.n_topics]
    os.makedirs(args.out_dir, exist_ok=True)
    questions = os.path.join(args.out_dir, 'questions.jsonl')
    write_jsonl(questions, [world.questions(t)[0] for t in topics])
    runs, fs = [], []
    for style in ('base', 'concise'):
        d = os.path.join(args.out_dir, style)
        evaluate_anah(EvalSettings(questions, d, seeds=args.seeds, unparsed_as='correct'),
                      ScriptedPolicy(world, style), style, annotator=WorldOracle())
        runs.append(f'{style}={d}')
        seeds = []
        for s in args.seeds:
            fd = os.path.join(args.out_dir, 'factscore', f'{style}-seed{s}')
            factscore_fixture(os.path.join(d, f'seed{s}', 'annotated.jsonl'), fd, 10.0)
            seeds.append(fd)
        fs.append(f'{style}=' + ','.join(seeds))
    out = os.path.join(args.out_dir, 'report.md')
    subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), 'report.py'),
                    '--runs', *runs, '--factscore', *fs, '--baseline', 'base', '--title',
                    f'Example: two scripted policies on {len(topics)} world questions',
                    '--out', out], check=True, stdout=subprocess.DEVNULL)
    with open(out, encoding='utf-8') as f:
        return f.read()


if __name__ == '__main__':
    main()
