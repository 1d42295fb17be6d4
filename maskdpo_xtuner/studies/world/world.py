"""A synthetic factual world whose every fact is known: topics, documents, questions, splits.

Four kinds of topic (person, organisation, place, event), each with six typed attributes whose
values come from vocabularies shared by many topics (years, cities, professions, ...) or are
other topics' names (a person's employer is an organisation of the world). A model that half
knows a topic can therefore "bleed" a neighbour's value into its answer, the failure the paper's
hypothesis describes (paper.md §6).

Knowledge comes with graded difficulty: each attribute appears in a topic's documents with its own
frequency (easy ones almost always, hard ones rarely), and topics differ in popularity (how many
documents mention them). Hard attributes of rare topics are where a model hallucinates.

Every sentence the world writes comes from a template with one subject and one value, so the
oracle (oracle.py) can read any such sentence back and check it exactly.
"""
import json
import random
from dataclasses import asdict, dataclass, field
from typing import Dict, List

# ------------------------------------------------------------------ vocabularies and templates

_SYL = ['ka', 'lo', 'mi', 'ren', 'dor', 'va', 'sel', 'tu', 'bri', 'an', 'vel', 'or', 'ish',
        'mar', 'go', 'ten', 'ri', 'sa', 'pol', 'un', 'e', 'zan', 'tho', 'li']

VOCAB = {
    'year': [str(y) for y in range(1820, 1980, 2)],                        # 80 values
    'profession': ['chemist', 'architect', 'violinist', 'geologist', 'novelist', 'engineer',
                   'botanist', 'potter', 'painter', 'surgeon', 'astronomer', 'sculptor',
                   'historian', 'linguist', 'pilot', 'photographer', 'economist', 'poet',
                   'physicist', 'cartographer', 'composer', 'judge', 'banker', 'diplomat'],
    'industry': ['shipping', 'textiles', 'mining', 'publishing', 'brewing', 'railways',
                 'insurance', 'optics', 'glassmaking', 'printing', 'clockmaking', 'pottery',
                 'tea trading', 'ironworks', 'dyes', 'aviation'],
    'award': ['Orlen Prize', 'Silver Quill', 'Vesta Medal', 'Karsai Prize', 'Holm Medal',
              'Lind Medal', 'Sol Prize', 'Iris Medal', 'Amber Star', 'Corin Award',
              'Delta Cup', 'Tarn Prize', 'Umber Medal', 'Pell Award', 'Noor Prize',
              'Ostra Cup'],
    'country': ['Varnia', 'Oskelad', 'Treluna', 'Markovy', 'Pellandra', 'Sudeth', 'Quorin',
                'Alvaria', 'Brenmoor', 'Castelle', 'Dunhollow', 'Estrevia'],
    'river': ['Amsel', 'Bregen', 'Corra', 'Dessa', 'Elbin', 'Fennow', 'Gaul', 'Harra',
              'Ister', 'Jarrow', 'Kell', 'Lunne', 'Morrow', 'Nessa'],
    'landmark': ['Glass Bridge', 'Old Mill', 'Bell Tower', 'Stone Gate', 'Red Lighthouse',
                 'Salt Market', 'Iron Dome', 'Willow Garden', 'Grand Arcade', 'North Fort',
                 'Copper Fountain', 'Marble Stair'],
    'population': [f'{n} thousand' for n in (4, 6, 9, 12, 15, 20, 25, 30, 40, 55, 70, 90)],
    'theme': ['tidal power', 'wild orchids', 'old maps', 'steam engines', 'folk songs',
              'glass art', 'river boats', 'clock towers', 'desert plants', 'star charts',
              'paper kites', 'bee keeping'],
    'visitors': [f'{n} thousand' for n in (2, 3, 5, 8, 11, 14, 18, 24, 32, 45)],
}

# attribute -> (value type, document frequency, answer template, document paraphrases)
# value types: a VOCAB key, or 'city' / 'person' / 'organisation' (names of other topics / cities)
KINDS = {
    'person': {
        'born': ('year', 0.95, '{s} was born in {v}.', ['In {v}, {s} was born.']),
        'city': ('city', 0.9, '{s} grew up in {v}.', ['The hometown of {s} is {v}.']),
        'profession': ('profession', 0.6, '{s} worked as a {v}.',
                       ['By profession, {s} was a {v}.']),
        'employer': ('organisation', 0.35, '{s} was employed by {v}.',
                     ['For many years {s} worked for {v}.']),
        'spouse': ('person', 0.25, '{s} was married to {v}.', ['The spouse of {s} was {v}.']),
        'award': ('award', 0.15, '{s} received the {v}.', ['The {v} went to {s}.']),
    },
    'organisation': {
        'founded': ('year', 0.95, '{s} was founded in {v}.', ['In {v}, {s} was founded.']),
        'hq': ('city', 0.9, '{s} is based in {v}.', ['The headquarters of {s} are in {v}.']),
        'industry': ('industry', 0.6, '{s} is active in {v}.', ['{s} makes its money in {v}.']),
        'founder': ('person', 0.35, '{s} was started by {v}.', ['{v} started {s}.']),
        'rival': ('organisation', 0.25, '{s} competes with {v}.',
                  ['The main rival of {s} is {v}.']),
        'award': ('award', 0.15, '{s} received the {v}.', ['The {v} went to {s}.']),
    },
    'place': {
        'country': ('country', 0.95, '{s} lies in {v}.', ['{s} is a town of {v}.']),
        'river': ('river', 0.9, '{s} stands on the {v} river.',
                  ['The {v} river flows through {s}.']),
        'founded': ('year', 0.6, '{s} was founded in {v}.', ['In {v}, {s} was founded.']),
        'landmark': ('landmark', 0.35, '{s} is known for the {v}.', ['The {v} is in {s}.']),
        'population': ('population', 0.25, '{s} has {v} inhabitants.',
                       ['About {v} people live in {s}.']),
        'twin': ('city', 0.15, '{s} is twinned with {v}.', ['{v} is the twin town of {s}.']),
    },
    'event': {
        'year': ('year', 0.95, '{s} took place in {v}.', ['In {v}, {s} took place.']),
        'host': ('city', 0.9, '{s} was hosted by {v}.', ['The host of {s} was {v}.']),
        'theme': ('theme', 0.6, 'The theme of {s} was {v}.', ['{s} was devoted to {v}.']),
        'organiser': ('organisation', 0.35, '{s} was organised by {v}.',
                      ['{v} organised {s}.']),
        'winner': ('person', 0.25, '{s} was won by {v}.', ['The winner of {s} was {v}.']),
        'visitors': ('visitors', 0.15, '{s} drew {v} visitors.',
                     ['About {v} people visited {s}.']),
    },
}

QUESTIONS = {  # three in-domain question styles per kind (the paper has 3 per topic)
    'person': ['Who was {s}?', 'Tell me about {s}.', 'What do you know about {s}?'],
    'organisation': ['What is {s}?', 'Tell me about {s}.', 'What do you know about {s}?'],
    'place': ['Where is {s}?', 'Tell me about {s}.', 'What do you know about {s}?'],
    'event': ['What was {s}?', 'Tell me about {s}.', 'What do you know about {s}?'],
}
# The out-of-domain style (the role Biography plays in the paper): never seen in training.
OOD_QUESTION = 'Write a short profile of {s}, please.'
# Every taught answer opens with this fact-free sentence (the oracle labels it ``nofact``). It
# puts the subject's name in the answer in the same form as in the question, which a tiny model
# copies far more easily than a name glued to the chat template's newline.
OPENER = 'Here is what I know about {s}.'


@dataclass
class WorldConfig:
    seed: int = 0
    n_person: int = 240
    n_organisation: int = 120
    n_place: int = 120
    n_event: int = 120
    n_cities: int = 40
    # topic splits, as fractions of all topics, stratified by kind
    sft: float = 0.34      # answer-style (question -> answer) training data for the base model
    train: float = 0.33    # preference data (Mask-DPO training), documents only, like test
    val: float = 0.08      # choose hyperparameters here, never on test
    # the rest is test (held-out topics)


@dataclass
class Topic:
    id: str
    name: str
    kind: str
    split: str
    popularity: float
    facts: Dict[str, str] = field(default_factory=dict)


class World:
    def __init__(self, config: WorldConfig, topics: List[Topic], cities: List[str]):
        self.config, self.topics, self.cities = config, topics, cities
        self.by_name = {t.name: t for t in topics}

    # ------------------------------------------------------------------------ generation
    @classmethod
    def generate(cls, config: WorldConfig = WorldConfig()) -> 'World':
        rng = random.Random(config.seed)
        counts = {'person': config.n_person, 'organisation': config.n_organisation,
                  'place': config.n_place, 'event': config.n_event}
        names = _unique_names(rng, sum(counts.values()) + config.n_cities)
        cities, names = names[:config.n_cities], names[config.n_cities:]
        topics, k = [], 0
        for kind, n in counts.items():
            splits = _splits(rng, n, config)
            for i in range(n):
                name = names[k] + (' Fair' if kind == 'event' else '')
                topics.append(Topic(f'{kind[:3]}{i:04d}', name, kind, splits[i],
                                    popularity=rng.choice([1, 1, 1, 2, 2, 3, 4])))
                k += 1
        pools = {'city': cities,
                 **{kind: [t.name for t in topics if t.kind == kind] for kind in counts}}
        for t in topics:
            for attr, (vtype, *_rest) in KINDS[t.kind].items():
                choices = pools.get(vtype) or VOCAB[vtype]
                # skewed popularity of values: some values are shared by many topics
                value = choices[min(int(rng.expovariate(1 / (len(choices) / 3))),
                                    len(choices) - 1)]
                while value == t.name:
                    value = rng.choice(choices)
                t.facts[attr] = value
        return cls(config, topics, cities)

    # ------------------------------------------------------------------------ text
    def document(self, topic: Topic, rng: random.Random, full: bool = False) -> str:
        """One rendering of the topic's document: each attribute appears with its own frequency
        (always with ``full``), in random order, in a random template."""
        sents = []
        for attr, (_, freq, answer, paraphrases) in KINDS[topic.kind].items():
            if full or rng.random() < freq:
                sents.append(rng.choice([answer] + paraphrases).format(
                    s=topic.name, v=topic.facts[attr]))
        rng.shuffle(sents)
        return ' '.join(sents)

    def reference_document(self, topic: Topic) -> str:
        """The question's reference document: every fact, answer templates, fixed order."""
        return ' '.join(a.format(s=topic.name, v=topic.facts[attr])
                        for attr, (_, _, a, _) in KINDS[topic.kind].items())

    def answer(self, topic: Topic, rng: random.Random) -> str:
        """The answer style taught to the base model: the opener, then every attribute once, in
        random order."""
        sents = [a.format(s=topic.name, v=topic.facts[attr])
                 for attr, (_, _, a, _) in KINDS[topic.kind].items()]
        rng.shuffle(sents)
        return ' '.join([OPENER.format(s=topic.name)] + sents)

    def questions(self, topic: Topic, ood: bool = False) -> List[dict]:
        styles = [OOD_QUESTION] if ood else QUESTIONS[topic.kind]
        return [{'id': f'{topic.id}-{"ood" if ood else f"q{j}"}',
                 'question': style.format(s=topic.name), 'lang': 'en',
                 'topic': topic.name, 'topic_id': topic.id, 'kind': topic.kind,
                 'facts': dict(topic.facts), 'document': self.reference_document(topic)}
                for j, style in enumerate(styles)]

    def split(self, name: str) -> List[Topic]:
        return [t for t in self.topics if t.split == name]

    def corpus_words(self) -> List[str]:
        """Every string the world can write, to train a tokenizer that knows all of it."""
        out = [t.name for t in self.topics] + self.cities
        for vals in VOCAB.values():
            out += vals
        for spec in KINDS.values():
            for _, _, answer, paraphrases in spec.values():
                out += [answer] + paraphrases
        for styles in QUESTIONS.values():
            out += styles
        return out + [OOD_QUESTION, OPENER, 'user', 'assistant']

    # ------------------------------------------------------------------------ io
    def save(self, path: str) -> None:
        with open(path, 'w', encoding='utf-8') as f:
            json.dump({'config': asdict(self.config), 'cities': self.cities,
                       'topics': [asdict(t) for t in self.topics]}, f, indent=1)

    @classmethod
    def load(cls, path: str) -> 'World':
        with open(path, encoding='utf-8') as f:
            raw = json.load(f)
        return cls(WorldConfig(**raw['config']), [Topic(**t) for t in raw['topics']],
                   raw['cities'])


def _unique_names(rng, n):
    names = set()
    while len(names) < n:
        word = ''.join(rng.choice(_SYL) for _ in range(rng.choice([2, 2, 3])))
        names.add(word.capitalize())
    # sorted() first: a set's order depends on the process's string-hash seed
    return sorted(sorted(names), key=lambda _: rng.random())


def _splits(rng, n, config):
    order = list(range(n))
    rng.shuffle(order)
    bounds = [round(n * config.sft), round(n * (config.sft + config.train)),
              round(n * (config.sft + config.train + config.val))]
    out = [''] * n
    for rank, i in enumerate(order):
        out[i] = ('sft' if rank < bounds[0] else 'train' if rank < bounds[1]
                  else 'val' if rank < bounds[2] else 'test')
    return out
