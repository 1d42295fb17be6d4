"""The claims of a sentence about a country and their verdicts: the table of countries.py.

:func:`read` gives (claims, leftover): each claim ``{attribute, said, true, correct}`` with
``correct`` True, False, or None when the data cannot decide, and what the sentence asserts
besides them; :func:`label_of` turns them into the sentence's label.
"""
import re
from typing import List, Optional, Tuple

from maskdpo_xtuner.studies.real import geodata
from maskdpo_xtuner.studies.real.claims import (check_figure, directions, judge_direction,
                                                leftover_claim)
from maskdpo_xtuner.studies.real.geodata import fold
from maskdpo_xtuner.studies.real.reading import (_BORDER, _CAPITAL, _COUNTS, _IS_CONTINENT,
                                                 _LARGEST, _LOCATION, _ORDINALS, _POPULATION,
                                                 _SUPERLATIVE, AMBIGUOUS_CURRENCY, CONTINENTS,
                                                 LANGUAGES, NAMED_REGIONS, Reading,
                                                 _continent_centres, _currency_words, _nearest,
                                                 _unknown_names, _vocabulary)

POPULATION_TOLERANCE = 0.25
AREA_TOLERANCE = 0.10


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

