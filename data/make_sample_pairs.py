"""Write data/sample_pairs.jsonl: a small, deterministic Mask-DPO training file.

    python data/make_sample_pairs.py            # rewrites data/sample_pairs.jsonl

The facts are invented. Each record is a question with a chosen and a rejected answer whose
sentences are labelled; records mix the official labels and the ANAH-v2 ones, English and
Chinese, prose and lists, and some carry character spans. See data/README.md for the format.
"""
import json
import os
import random

PEOPLE = [
    ('Elna Varga', 'a chemist', 'Pecs', 1911, 'the Karsai Prize', 'catalysts'),
    ('Tomas Reiter', 'an architect', 'Graz', 1932, 'the Holm Medal', 'railway stations'),
    ('Mirela Stan', 'a violinist', 'Iasi', 1948, 'the Orfeo Award', 'folk melodies'),
    ('Jonas Berk', 'a geologist', 'Tartu', 1925, 'the Lind Medal', 'glacial lakes'),
    ('Ines Maro', 'a novelist', 'Braga', 1956, 'the Sol Prize', 'fishing villages'),
    ('Pavel Dusek', 'an engineer', 'Brno', 1903, 'the Vega Prize', 'water turbines'),
    ('Lotte Aalders', 'a botanist', 'Leiden', 1939, 'the Iris Medal', 'dune grasses'),
    ('Kaito Mori', 'a potter', 'Hagi', 1944, 'the Kiln Award', 'ash glazes'),
]
CITIES = ['Pecs', 'Graz', 'Iasi', 'Tartu', 'Braga', 'Brno', 'Leiden', 'Hagi']
ZH = [
    ('林晓', '化学家', '杭州', 1931, '青松奖'),
    ('周明', '建筑师', '苏州', 1952, '长河奖'),
    ('陈雨', '小提琴家', '厦门', 1947, '金弦奖'),
    ('王博', '地质学家', '兰州', 1928, '山岳奖'),
]


def english(rng, person, wrong):
    name, job, city, year, prize, topic = person
    first = name.split()[0]
    good = [f'{name} was {job} born in {city}.', f'{first} was born in {year}.',
            f'{first} is known for work on {topic}.', f'{first} received {prize}.']
    bad = [f'{name} was {job} born in {wrong}.', f'{first} was born in {year + rng.randint(3, 20)}.',
           f'{first} is known for work on {rng.choice(["tides", "comets", "bridges"])}.',
           f'{first} received the {rng.choice(["Gold", "Silver"])} Star.']
    return good, bad


def response(rng, good, bad, n_bad, style, labels):
    idx = list(range(len(good)))
    bad_idx = set(rng.sample(idx, n_bad))
    sents = [bad[i] if i in bad_idx else good[i] for i in idx]
    types = [labels[1] if i in bad_idx else labels[0] for i in idx]
    if style == 'list':
        text = sents[0] + '\n' + '\n'.join(f'{k}. {s}' for k, s in enumerate(sents[1:], 1))
    elif style == 'paragraphs':
        text = '\n\n'.join(sents)
    else:
        text = ' '.join(sents)
    return text, sents, types


def make(seed=0):
    rng = random.Random(seed)
    records = []
    label_sets = [('no_hallucination', 'hallucination'), ('ok', 'contradictory'),
                  ('nofact', 'unverifiable')]
    for k in range(24):
        person = PEOPLE[k % len(PEOPLE)]
        wrong = rng.choice([c for c in CITIES if c != person[2]])
        good, bad = english(rng, person, wrong)
        style = ['prose', 'list', 'paragraphs'][k % 3]
        labels = label_sets[k % 3]
        c_text, c_sents, c_types = response(rng, good, bad, rng.randint(0, 1), style, labels)
        r_text, r_sents, r_types = response(rng, good, bad, rng.randint(2, 4), style, labels)
        q = rng.choice(['Who was {}?', 'Tell me about {}.', 'What do you know about {}?'])
        rec = {'prompt': [{'role': 'user', 'content': q.format(person[0])}],
               'chosen': [{'role': 'assistant', 'content': c_text}],
               'rejected': [{'role': 'assistant', 'content': r_text}],
               'chosen_item': {'sents': c_sents, 'type': c_types},
               'rejected_item': {'sents': r_sents, 'type': r_types}}
        if k % 4 == 0:  # some producers give exact character spans
            for side, text, sents in (('chosen', c_text, c_sents), ('rejected', r_text, r_sents)):
                spans, cur = [], 0
                for s in sents:
                    start = text.index(s, cur)
                    spans.append([start, start + len(s)])
                    cur = start + len(s)
                rec[f'{side}_item']['spans'] = spans
        records.append(rec)
    for k in range(8):
        name, job, city, year, prize = ZH[k % len(ZH)]
        good = [f'{name}是一位{job}。', f'{name}出生于{city}。', f'{name}生于{year}年！', f'{name}获得过{prize}。']
        bad = [f'{name}是一位诗人。', f'{name}出生于广州。', f'{name}生于{year + 9}年！', f'{name}获得过金星奖。']
        c_text, c_sents, c_types = response(rng, good, bad, rng.randint(0, 1), 'prose', ('ok', 'contradictory'))
        r_text, r_sents, r_types = response(rng, good, bad, rng.randint(2, 4), 'prose', ('ok', 'contradictory'))
        c_text, r_text = ''.join(c_sents), ''.join(r_sents)  # Chinese: no spaces between sentences
        records.append({'prompt': [{'role': 'user', 'content': f'请介绍一下{name}。'}],
                        'chosen': [{'role': 'assistant', 'content': c_text}],
                        'rejected': [{'role': 'assistant', 'content': r_text}],
                        'chosen_item': {'sents': c_sents, 'type': c_types},
                        'rejected_item': {'sents': r_sents, 'type': r_types}})
    return records


if __name__ == '__main__':
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'sample_pairs.jsonl')
    with open(out, 'w', encoding='utf-8') as f:
        for rec in make():
            f.write(json.dumps(rec, ensure_ascii=False) + '\n')
    print(f'wrote {out}')
