"""Paper Table 3 in the world: where the answers of the preference pairs come from.

The paper trains Mask-DPO on pairs of Llama's own samples (77.53), of InternLM2's samples
(59.43) and of Llama samples whose preferred answers were written with the reference document in
the prompt ("Llama+Doc", 39.43, below the untrained 49.19). Here, for one base model (world W,
seed B):

* ``own samples`` (no ``source``): the main study's pairs, from this base model's samples;
* ``base<B'>``: the same world's base model pretrained from another seed (settings.py:
  ``other_base_seed``, B + 1). It read the same documents, so it knows about as much, but its
  errors and its wording are its own: its samples of the same train questions (same K, sampling
  settings and seed), labelled by the oracle and paired by the same rules (its own main-study
  stages, so they are shared with any study of that base model);
* ``doc``: every kept own pair with its chosen answer replaced by the world's answer for the
  topic (the opener, then every fact once, all true): what a writer holding the document
  produces; the rejected answer is the base model's own worst sample, as in the paper's
  Llama+Doc, where only the preferred answers saw the document.
"""
import json
import os
from typing import Tuple

from maskdpo_xtuner.annotate.split import split_sentences
from maskdpo_xtuner.io.jsonl import read_jsonl, write_jsonl
from maskdpo_xtuner.pairs import Candidate, make_record, question_rng
from maskdpo_xtuner.pipeline.stages import code_hash
from maskdpo_xtuner.studies.world.oracle import judge_answer
from maskdpo_xtuner.studies.world.world import World

CORRECT = ('ok', 'nofact')


def topic_id(pair_or_question_id: str) -> str:
    """'per0012-q1' -> 'per0012' (world question ids are '<topic id>-<style>')."""
    return pair_or_question_id.rsplit('-', 1)[0]


def labelled(text: str, topic) -> Candidate:
    """``text`` as a pair candidate: its sentences with exact spans and the oracle's labels."""
    sents = split_sentences(text, lang='en')
    judged = judge_answer(text, topic.name, topic.kind, tuple(sorted(topic.facts.items())))
    if [s.text for s in sents] != [t for t, _ in judged]:
        raise RuntimeError(f'{topic.id}: the oracle split the answer differently')
    return Candidate(0, text, [{'start': s.start, 'end': s.end, 'text': s.text, 'label': lab}
                               for s, (_, (lab, _)) in zip(sents, judged)])


def doc_chosen_pairs(world: World, pairs_path: str, out: str, seed: int) -> dict:
    """Write ``out``: the pairs of ``pairs_path`` with each chosen answer replaced by the
    world's answer for its topic (fact order drawn from (seed, question id)); returns counts."""
    topics = {t.id: t for t in world.topics}
    rows = []
    for p in read_jsonl(pairs_path):
        topic = topics[topic_id(p['id'])]
        chosen = labelled(world.answer(topic, question_rng(seed, p['id'])), topic)
        if any(lab not in CORRECT for lab in chosen.labels):
            raise RuntimeError(f'{p["id"]}: the world\'s answer is not all correct: '
                               f'{chosen.labels}')
        item = p['rejected_item']
        rejected = Candidate(1, p['rejected'][0]['content'], [
            {'start': a, 'end': b, 'text': t, 'label': lab}
            for t, lab, (a, b) in zip(item['sents'], item['type'], item['spans'])])
        rows.append(make_record({'id': p['id'], 'prompt': p['prompt']}, chosen, rejected))
    write_jsonl(out, rows)
    summary = {'pairs': len(rows), 'from': pairs_path,
               'mean_chosen_score': sum(r['chosen_score'] for r in rows) / max(1, len(rows)),
               'mean_rejected_score': sum(r['rejected_score'] for r in rows) / max(1, len(rows))}
    with open(out + '.summary.json', 'w', encoding='utf-8') as f:
        json.dump(summary, f, indent=1)
    return summary


def source_pairs(study, source: str, seed: int) -> Tuple[str, str, str]:
    """(pairs file, annotated samples it came from, key of its content) of one source, for a
    world study ``study`` (study.Study) and training seed ``seed``; builds what is missing."""
    if source.startswith('base') and source[4:].isdigit():
        other = study.sibling(int(source[4:]))
        key = other.build_pairs(seed)
        return other.pairs_file, other.seed_dir(seed, 'annotate', 'annotated.jsonl'), key
    if source == 'doc':
        d = study.seed_dir(seed, 'pairs-doc')
        out = os.path.join(d, 'pairs.jsonl')
        own = study.pairs_file
        study.stages.run(f'seed {seed}: pairs with chosen answers from the document', d,
                         {'pairs': study.pairs_key(own), 'world': study.world_key,
                          'seed': seed, 'code': [study.module_hash(__file__),
                                                 code_hash('annotate'), code_hash('pairs')]},
                         lambda: doc_chosen_pairs(study.world, own, out, seed))
        return out, study.seed_dir(seed, 'annotate', 'annotated.jsonl'), study.pairs_key(out)
    raise ValueError(f"unknown pairs source {source!r}: 'base<seed>' or 'doc'")
