"""Generated preference records for benchmarks: biographies of invented people, English and
Chinese, in the layouts chat models write (prose, paragraphs, numbered and bulleted lists, a bold
header), with abbreviations and '!' that a sentence splitter must get right; sentences labelled
at random (the chosen answer's first correct, the rejected answer's first hallucinated).
"""
import random

NAMES = ['Ada Varga', 'Tomas Reiter', 'Mirela Stan', 'Jonas Berk', 'Ines Maro', 'Pavel Dusek']
CITIES = ['Pecs', 'Graz', 'Iasi', 'Tartu', 'Braga', 'Brno', 'Leiden', 'St. Louis']
FACTS = [
    '{n} was born in {c} in {y}.',
    'In {y}, {f} moved to {c}, where she studied under Dr. Kovacs!',
    '{f} earned a Ph.D. from the U.S. Naval Academy (class of {y}).',
    'Her best-known work, "The {c} Notes", appeared in {y}; it sold 3.5 million copies.',
    '{f} won the Lind Medal.',
    'She married the painter J. K. Orban in {y}.',
    'Critics called it "bold" and "new"!',
    '{f} died in {c} at the age of {a}.',
    'Today, a street in {c} bears her name.',
]
ZH_FACTS = ['{n}出生于{c}。', '她在{y}年获得了金星奖！', '她的代表作是《{c}笔记》。', '她于{y}年去世；享年{a}岁。']


def make_response(rng, name, zh):
    first = name.split()[0]
    n = rng.choice([2, 3, 4, 5, 6, 8]) if rng.random() > 0.03 else rng.randint(60, 90)
    pool = ZH_FACTS if zh else FACTS
    sents = [rng.choice(pool).format(n=name, f=first, c=rng.choice(CITIES),
                                     y=rng.randint(1850, 1990), a=rng.randint(40, 99))
             for _ in range(n)]
    if zh:
        return ''.join(sents), sents
    style = rng.choice(['prose', 'paragraphs', 'numbered', 'bullets', 'header'])
    if style == 'prose':
        return ' '.join(sents), sents
    if style == 'paragraphs':
        return '\n\n'.join(sents), sents
    if style == 'numbered':
        return (sents[0] + '\n\n' + '\n'.join(f'{i}. {s}' for i, s in enumerate(sents[1:], 1)),
                sents)
    if style == 'bullets':
        return sents[0] + '\n' + '\n'.join(f'- {s}' for s in sents[1:]), sents
    return f'**{name}**\n\n' + ' '.join(sents), sents


def make_records(n, seed=0):
    rng = random.Random(seed)
    records = []
    while len(records) < n:
        zh = rng.random() < 0.15
        name = rng.choice(NAMES)
        item = {}
        for side in ('chosen', 'rejected'):
            text, sents = make_response(rng, name, zh)
            types = [rng.choice(['hallucination', 'no_hallucination']) for _ in sents]
            types[0] = 'no_hallucination' if side == 'chosen' else 'hallucination'
            item[side] = [{'role': 'assistant', 'content': text}]
            item[f'{side}_item'] = {'sents': sents, 'type': types}
        q = f'请介绍一下{name}。' if zh else f'Tell me about {name}.'
        records.append({'prompt': [{'role': 'user', 'content': q}], **item})
    return records
