"""The names a sentence holds, for the exact judges (country_claims.py, cities.py): countries,
cities, continents and regions, languages, other places (seas, lakes, organisations named like
a country or a continent), and its figures; with the vocabularies they are matched against.
"""
import re
from functools import lru_cache

from maskdpo_xtuner.studies.real import geodata
from maskdpo_xtuner.studies.real.claims import cased, figures, mentions
from maskdpo_xtuner.studies.real.geodata import fold

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

