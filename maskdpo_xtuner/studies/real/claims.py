"""Reading claims out of a sentence, for the exact judges (countries.py, cities.py).

A sentence is read on its folded text (geodata.fold: same length, so spans stay valid):

* :func:`mentions` finds names (countries, cities, continents, languages, ...) as whole words,
  longest first and not overlapping; names of seas and regions that contain a country's
  name ("Gulf of Guinea", "New Mexico") are found first, so they are never read as countries.
* :func:`figures` reads numbers with their scale ("14 million", "1.2 billion", "66,000,000"),
  their bound ("over", "nearly", "less than"...) and their unit ("km²", "%", "per square
  kilometre"), so an area is not read as a population and "over 14 million" is a lower bound.
* :func:`check_figure` compares a figure with a true value: a point within a relative
  tolerance, a bound as a bound.
* :func:`directions` finds compass claims: "bordered by Ghana to the west", "north of Lyon".
* :func:`leftover_claim` says whether a sentence still asserts something after the checked
  claims are taken out: a number, a proper name, or a word of fact (founded, independence,
  river, language, president, ...). Such a sentence cannot be fully checked.
"""
import re
from typing import Dict, Iterable, List, Optional, Tuple

from maskdpo_xtuner.studies.real.geodata import fold

Span = Tuple[int, int]

_WORD = r"[a-z0-9']"


def mentions(text: str, names: Iterable[str], taken: Optional[List[Span]] = None
             ) -> List[Tuple[str, Span]]:
    """(name, span) of ``names`` (folded) in folded ``text``, whole words, longest first,
    not overlapping each other nor ``taken`` (which is extended)."""
    low = fold(text)
    taken = [] if taken is None else taken
    found = []
    for n in sorted(set(names), key=len, reverse=True):
        if not n or n not in low:
            continue
        for m in re.finditer(r'(?<![a-z0-9])' + re.escape(n) + r'(?![a-z0-9])', low):
            if not any(a < m.end() and m.start() < b for a, b in taken):
                found.append((n, m.span()))
                taken.append(m.span())
    return sorted(found, key=lambda x: x[1])


def cased(text: str, names: Iterable[str], taken: List[Span]) -> List[Tuple[str, Span]]:
    """Like :func:`mentions`, with the case as written ("US" but not "us")."""
    found = []
    for n in names:
        for m in re.finditer(r'(?<![A-Za-z0-9.])' + re.escape(n) + r'(?![A-Za-z0-9])', text):
            if not any(a < m.end() and m.start() < b for a, b in taken):
                found.append((n, m.span()))
                taken.append(m.span())
    return found

# ------------------------------------------------------------------------------------ figures


_SCALE = {'million': 1e6, 'millions': 1e6, 'm': 1e6, 'mn': 1e6, 'billion': 1e9, 'bn': 1e9,
          'thousand': 1e3, 'k': 1e3, 'lakh': 1e5, 'crore': 1e7}
_LOWER = r'over|more than|above|exceeding|in excess of|at least|upwards of|greater than'
_UPPER = r'under|less than|below|fewer than|up to|at most|not more than'
_NEAR = r'nearly|almost|just under|close to|approaching'
_FIGURE = re.compile(
    r'(?:(?P<bound>' + _LOWER + '|' + _UPPER + '|' + _NEAR + r')\s+)?'
    r'(?:(?:about|around|approximately|roughly|some|an estimated|estimated|approx\.?|~)\s+)?'
    r'(?<![\w.,])(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)(?![\w,]*\d)\s*'
    r'(?P<scale>million|millions|billion|thousand|lakh|crore|bn\b|mn\b|m\b|k\b)?'
    r'(?P<unit>\s*(?:%|percent|per cent|square (?:kilomet(?:er|re)s?|km|miles?)|sq\.? ?'
    r'(?:km|mi(?:les?)?)|km2|km²|mi2|mi²|kilomet(?:er|re)s?|km\b|miles?|mi\b|hectares?|'
    r'people per|inhabitants per|persons per|per square))?', re.IGNORECASE)


def figures(text: str) -> List[dict]:
    """Numbers of ``text``: ``value``, ``bound`` ('lower', 'upper', 'near' or None),
    ``unit`` ('percent', 'area_km2', 'km', 'density' or None), ``year`` (a bare 1000-2100
    integer), ``span``."""
    out = []
    for m in _FIGURE.finditer(text):
        digits, scale = m.group('num'), (m.group('scale') or '').lower()
        value = float(digits.replace(',', ''))
        if scale:
            value *= _SCALE[scale]
        unit_text = (m.group('unit') or '').strip().lower()
        unit = None
        if unit_text:
            if unit_text in ('%', 'percent', 'per cent'):
                unit = 'percent'
            elif 'per' in unit_text:
                unit = 'density'
            elif 'sq' in unit_text or '2' in unit_text or '²' in unit_text or 'hectare' in unit_text:
                unit = 'area_km2'
                if 'mi' in unit_text:
                    value *= 2.58999
                elif 'hectare' in unit_text:
                    value /= 100
            else:
                unit = 'km'
                if unit_text.startswith('mi'):
                    value *= 1.60934
        bound = (m.group('bound') or '').lower()
        kind = (None if not bound else 'lower' if re.fullmatch(_LOWER, bound)
                else 'upper' if re.fullmatch(_UPPER, bound) else 'near')
        year = (not scale and not unit and ',' not in digits and '.' not in digits
                and 1000 <= value <= 2100)
        out.append({'value': value, 'bound': kind, 'unit': unit, 'year': year,
                    'scaled': bool(scale), 'span': m.span()})
    return out


def check_figure(f: dict, true: float, tolerance: float) -> bool:
    """A point within ``tolerance`` (relative) of ``true``; a lower bound ("over X") right
    when ``true`` >= X (less the tolerance's fifth: "over 14 million" of 13.9 million passes);
    an upper bound when ``true`` <= X (plus the same); "nearly X" when ``true`` is at most a
    little over X and within the tolerance below it."""
    v, slack = f['value'], tolerance / 5
    if f['bound'] == 'lower':
        return true >= v * (1 - slack)
    if f['bound'] == 'upper':
        return true <= v * (1 + slack)
    if f['bound'] == 'near':
        return v * (1 - tolerance) <= true <= v * (1 + slack)
    return abs(v - true) <= tolerance * true

# ---------------------------------------------------------------------------------- directions


POINTS = {'north': 0, 'northeast': 45, 'east': 90, 'southeast': 135, 'south': 180,
          'southwest': 225, 'west': 270, 'northwest': 315}
_DIR = (r'(north|south)[- ]?(east|west)(?:ern)?|north(?:ern)?|south(?:ern)?|east(?:ern)?|'
        r'west(?:ern)?')
_REGION_AFTER = re.compile(r'[- ]?(?:asia|africa|europe|america|pacific|atlantic|indies|'
                           r'hemisphere|coast\b(?! of))')
DIRECTION = re.compile(r'(?<![a-z])(?:' + _DIR + r')(?![a-z])')


def direction_degrees(word: str) -> float:
    w = re.sub(r'[- ]|ern$', '', word.lower())
    return POINTS[w]


def angle(a: float, b: float) -> float:
    """Smallest difference between two bearings, in degrees."""
    d = abs(a - b) % 360
    return min(d, 360 - d)


def judge_direction(claimed: float, true: float) -> Optional[bool]:
    """True within 67.5 degrees (the claimed point and its neighbours' halves), False beyond
    112.5, None in between (too close to call from positions)."""
    d = angle(claimed, true)
    return True if d <= 67.5 else False if d >= 112.5 else None


def directions(text: str, places: List[Tuple[str, Span]]) -> List[dict]:
    """Compass claims of ``text`` about ``places`` (name, span), each ``{place, degrees,
    relation}``: 'of' for "<dir> of P" and "<dir>ern P" (the subject lies <dir> of P, or in
    P's <dir>), 'to' for "P to the
    <dir>" / "to the <dir> is P" / "<dir>ern neighbour P" (P lies <dir> of the subject)."""
    low = fold(text)
    out = []
    for m in DIRECTION.finditer(low):
        if _REGION_AFTER.match(low, m.end()):
            continue  # "East Asia", "West African": a region's name, not a direction
        deg = direction_degrees(m.group(0))
        after = low[m.end():m.end() + 4]
        part = re.match(r' (?:coast|part|region|side|border|edge|tip|corner|shore|end)s? of ',
                        low[m.end():m.end() + 16])
        if after.startswith(' of') or after.startswith('-of') or part:
            start = m.end() + (part.end() if part else 0)
            nxt = [p for p in places if p[1][0] >= start and p[1][0] - start <= 8]
            if nxt:
                out.append({'place': nxt[0][0], 'degrees': deg, 'relation': 'of'})
            continue
        nxt = [p for p in places if 0 < p[1][0] - m.end() <= 2
               and not low[m.end():p[1][0]].strip()]
        if nxt:  # "southwestern China": the subject lies in that part of the place
            out.append({'place': nxt[0][0], 'degrees': deg, 'relation': 'of'})
            continue
        # the nearest place in the same clause (no ',', ';' or ' and ' between them)
        best = None
        for name, (a, b) in places:
            gap = low[b:m.start()] if b <= m.start() else low[m.end():a]
            if len(gap) > 40 or re.search(r'[,;.]| and |\bwhile\b|\bwhereas\b', gap):
                continue
            dist = len(gap)
            if best is None or dist < best[0]:
                best = (dist, name)
        if best is not None:
            out.append({'place': best[1], 'degrees': deg, 'relation': 'to'})
    return out

# ------------------------------------------------------------------------------- leftover


FACT_WORDS = re.compile(
    r'\b(found(?:ed|ing)?|establish(?:ed)?|independen(?:ce|t)|colon(?:y|ial|ised|ized)|'
    r'century|centuries|ancient|empire|kingdom|dynasty|war|revolution|treaty|president|'
    r'prime minister|king|queen|monarch(?:y)?|parliament|republic|democra(?:cy|tic)|'
    r'federal|constitution|religion|muslim|christian|islam|catholic|buddhis[mt]|hindu|'
    r'language|spoken|speak|dialect|river|mountain|mount|peak|lake|ocean|sea|coast(?:line)?|'
    r'island|desert|volcano|forest|rainforest|climate|tropical|temperate|arid|gdp|economy|'
    r'export|import|industr(?:y|ies|ial)|oil|gas|mining|agricultur(?:e|al)|tourism|'
    r'largest|smallest|biggest|highest|longest|oldest|second|third|member|headquarters|'
    r'university|airport|port|harbou?r|stadium|cathedral|mosque|temple|museum|unesco|'
    r'heritage|district|province|prefecture|county|municipality|metropolitan|'
    r'formerly|ethnic|tribe|'
    r'majority|minority|census|elevation|altitude)\b', re.IGNORECASE)
# capitalised words that are no claim on their own
_COMMON = {'it', 'its', 'the', 'this', 'these', 'there', 'they', 'their', 'in', 'with', 'as',
           'a', 'an', 'and', 'i', 'however', 'overall', 'today', 'additionally', 'also',
           'furthermore', 'moreover', 'capital', 'population', 'currency', 'continent',
           'location', 'neighbors', 'neighbours', 'borders', 'border', 'country', 'city',
           'region', 'note', 'key', 'facts', 'profile', 'overview', 'here', 'is', 'of', 'to',
           'on', 'for', 'at', 'by', 'from', 'has', 'was', 'known', 'yes', 'no', 'while',
           'although', 'despite', 'located', 'bordering', 'bordered', 'countries', 'main',
           'official', 'languages', 'language', 'name', 'government', 'economy', 'history',
           'geography', 'culture', 'climate', 'summary', 'introduction', 'conclusion',
           'area', 'size', 'status', 'capital city', 'neighboring', 'neighbouring', 'sure',
           'one', 'some', 'many', 'most', 'each', 'all', 'both', 'other', 'people',
           'whether', 'not', 'however', 'like', 'unlike', 'despite', 'though', 'national',
           'largest', 'major', 'north', 'south', 'east', 'west', 'central', 'northern',
           'southern', 'eastern', 'western', 'what', 'when', 'where', 'which', 'who'}


def leftover_claim(text: str, taken: List[Span], ignore: Iterable[str] = ()) -> Optional[str]:
    """What ``text`` still asserts outside the ``taken`` spans (the claims already checked,
    the names already read), or None: a number, a capitalised name not at the start of the
    sentence and not in ``ignore`` (folded), or a word of fact (:data:`FACT_WORDS`). A vague
    sentence ("It is a beautiful country with a rich culture.") asserts nothing."""
    chars = list(text)
    for a, b in taken:
        chars[a:b] = ' ' * (b - a)
    rest = ''.join(chars)
    body = re.sub(r'^[\s*#>\-\d.)•]*', '', rest)  # list markers and markdown
    m = re.search(r'\d', body)
    if m:
        return f'number "{body[max(0, m.start() - 10):m.end() + 10].strip()}"'
    ignore = {fold(x) for x in ignore}
    words = list(re.finditer(r"[A-Z][\w'’-]*(?:\s+(?:of\s+|de\s+|the\s+)?[A-Z][\w'’-]*)*", body))
    for w in words:
        first_of_sentence = w.start() == 0 or re.search(r'[.:!?]\s*$|^\W*$', body[:w.start()])
        name = fold(w.group(0))
        if name in ignore or name in _COMMON:
            continue
        if first_of_sentence and ' ' not in name:
            continue
        if name.split()[0] in _COMMON and ' ' in name:
            name = ' '.join(name.split()[1:])
            if name in ignore or name in _COMMON:
                continue
        return f'name "{w.group(0)}"'
    m = FACT_WORDS.search(body)
    return f'word "{m.group(0)}"' if m else None


def spans_of(found: List[Tuple[str, Span]]) -> List[Span]:
    return [s for _, s in found]


def first(d: Dict, keys: Iterable):
    return next((d[k] for k in keys if k in d), None)
