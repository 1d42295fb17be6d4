"""The real study's orchestration (maskdpo_xtuner/studies/real/run.py, settings.py, report.py) up
to where vLLM and xtuner start; the whole study is measured in docs/real_model.md."""
import os

import numpy as np
import pytest

from conftest import SAMPLE
from maskdpo_xtuner.io.jsonl import read_jsonl, write_jsonl
from maskdpo_xtuner.pipeline.stages import ROOT
from maskdpo_xtuner.studies.real import countries
from maskdpo_xtuner.studies.real.report import (RATES, TWO_THREADS, behaviour, comparisons,
                                                 estimate)
from maskdpo_xtuner.studies.real.run import CODE, TRAIN_CODE, RealRun
from maskdpo_xtuner.studies.real.settings import (QUESTION_FORMS, eval_sets, model_names,
                                                  settings_from)


def test_settings_presets_arms_and_refusals():
    s = settings_from()
    assert s.top_k == 40 and s.temperature == 0.8  # the paper's sampling
    assert s.arms == ('dpo', 'maskdpo') and s.train_seeds == (0, 1, 2)
    q = settings_from('quick')
    assert q.train_seeds == (0,) and model_names(q) == ['base', 'dpo-s0', 'maskdpo-s0']
    assert q.eval_seeds == () and len(eval_sets(q)['out-of-domain'][1]) == 150  # greedy only
    assert model_names(settings_from(train_seeds=[0, 1])) == [  # seed by seed
        'base', 'dpo-s0', 'maskdpo-s0', 'dpo-s1', 'maskdpo-s1']
    assert settings_from('quick', train_seeds=[4, 5]).train_seeds == (4, 5)
    with pytest.raises(ValueError, match='unknown settings'):
        settings_from(topk=40)
    with pytest.raises(ValueError, match='unknown arms'):
        settings_from(arms=('dpo', 'kto'))
    with pytest.raises(ValueError, match='unknown preset'):
        settings_from('fast')
    with pytest.raises(ValueError, match='batch_size must divide 8'):
        settings_from(batch_size=3)


def test_held_out_questions_never_ask_about_a_train_country():
    s = settings_from()
    train = {q['country'] for q in countries.questions('train')}
    sets = eval_sets(s)
    assert list(sets) == ['in-domain', 'out-of-domain']
    annotator, qs = sets['in-domain']
    assert annotator == 'countries'
    ood_annotator, ood = sets['out-of-domain']
    assert ood_annotator == 'cities' and len(ood) > 300  # another kind of entity, every city
    assert len(eval_sets(settings_from(ood_questions=7))['out-of-domain'][1]) == 7
    assert not train & {q['country'] for q in qs}
    assert len({q['id'] for q in qs}) == len(qs)
    held_out = len(countries.split('val')) + len(countries.split('test'))
    assert len(qs) == held_out * len(QUESTION_FORMS)
    assert {q['question'] for q in qs if q['form'] == 0} == {
        QUESTION_FORMS[0].format(name=c['name'])
        for c in countries.split('val') + countries.split('test')}


def test_too_few_pairs_are_refused_before_any_model_loads(tmp_path):
    """The general check (maskdpo_xtuner/train.py: required_pairs) says how many the config
    needs with the study's batch split, before the reference pass loads a model."""
    (tmp_path / 'model').mkdir()
    (tmp_path / 'model' / 'config.json').write_text('{}')
    run = RealRun(settings_from(), str(tmp_path), str(tmp_path / 'model'))
    write_jsonl(run.path('pairs', 'pairs.jsonl'), read_jsonl(SAMPLE)[:7])
    with pytest.raises(RuntimeError, match=r'7 valid training pair\(s\), but this config needs '
                                           r'at least \d+.*--train-questions'):
        run._reference()
    assert not os.path.exists(run.path('reference'))


def test_every_arm_trains_the_same_config_with_one_reference_cache(tmp_path, smollm2_dir):
    """The options the study passes load into the config: same pairs and cache for every arm,
    8 pairs per optimizer step, the base model in every path key."""
    from mmengine.config import Config
    run = RealRun(settings_from(batch_size=4), str(tmp_path), smollm2_dir)
    cfg = Config.fromfile(run.config)
    cfg.merge_from_dict({**run._options(), 'model.mask_mode': 'none'})
    assert cfg.model.ref_logps_cache == cfg.train_dataloader.dataset.ref_logps_cache
    assert cfg.train_dataloader.batch_size * cfg.optim_wrapper.accumulative_counts == 8
    assert cfg.model.llm.pretrained_model_name_or_path == smollm2_dir
    assert cfg.model.mask_mode == 'none'


def test_questions_are_rewritten_when_a_question_form_changes(tmp_path, monkeypatch):
    """settings.py is not in the stages' code key, so the question texts key their stage."""
    from maskdpo_xtuner.studies.real import settings as real_settings
    (tmp_path / 'model').mkdir()
    (tmp_path / 'model' / 'config.json').write_text('{}')
    s = settings_from('quick', held_out_countries=2, ood_questions=2)
    run = RealRun(s, str(tmp_path / 'out'), str(tmp_path / 'model'))
    run._questions()
    assert run.stages.log[-1][1] != 'skipped'
    run._questions()
    assert run.stages.log[-1][1] == 'skipped'
    forms = ('Describe {name}.',) + QUESTION_FORMS[1:]
    monkeypatch.setattr(real_settings, 'QUESTION_FORMS', forms)
    run._questions()
    assert run.stages.log[-1][1] != 'skipped'
    first = read_jsonl(run.path('questions', 'in-domain.jsonl'))[0]
    assert first['question'].startswith('Describe ')


def test_a_missing_model_folder_is_refused_at_once(tmp_path):
    with pytest.raises(ValueError, match='not a model folder'):
        RealRun(settings_from(), str(tmp_path), str(tmp_path / 'none'))


def test_training_is_keyed_by_every_config_it_reads():
    from mmengine.config import Config
    cfg = Config.fromfile(os.path.join(ROOT, TRAIN_CODE[0]))
    assert cfg.filename.endswith(TRAIN_CODE[0])
    text = open(os.path.join(ROOT, TRAIN_CODE[0])).read()
    for rel in TRAIN_CODE[1:3]:  # the configs the child inherits
        assert os.path.exists(os.path.join(ROOT, rel))
        assert os.path.basename(rel).split('.')[0] in text


def test_stages_are_keyed_by_every_module_that_makes_their_outputs():
    """Every module of studies/real that makes a stage's output is in the stages' key, so a new
    judge module cannot be forgotten; a report fix or a new preset never re-runs a stage."""
    folder = os.path.join(ROOT, 'maskdpo_xtuner', 'studies', 'real')
    keyed = {os.path.basename(p) for p in CODE if p.endswith('.py')}
    modules = {f for f in os.listdir(folder) if f.endswith('.py')}
    assert keyed == modules - {'__init__.py', 'report.py', 'audit.py', 'settings.py'}
    assert all(os.path.exists(os.path.join(ROOT, p)) for p in CODE)


def _record(code, answers, labels, finish=None):
    from maskdpo_xtuner.annotate.split import split_sentences
    anns = []
    for text, labs in zip(answers, labels):
        sents = split_sentences(text)
        assert len(sents) == len(labs)
        anns.append({'sentences': [{'start': s.start, 'end': s.end, 'text': s.text, 'label': lab}
                                   for s, lab in zip(sents, labs)]})
    return {'id': f'country-{code}', 'question': 'Q', 'country': code, 'responses': answers,
            'annotations': anns, 'finish_reasons': finish or ['stop'] * len(answers)}


def test_behaviour_counts_claims_length_repetition_and_abstention():
    fr = countries.load_data()[0]['FR']
    right = f'The capital of France is {fr["capital"]}. France is located in Europe.'
    wrong = 'The capital of France is Lyon. The capital of France is Lyon.'
    recs = [_record('FR', [right, wrong], [['ok', 'ok'], ['contradictory', 'contradictory']],
                    ['stop', 'length']),
            _record('FR', ["I don't know."], [['nofact']])]
    recs[1]['id'] = 'country-FR-f1'
    b = behaviour(recs, 'countries')
    assert b['answers'] == 3
    assert b['right_claims_per_answer'] == pytest.approx(2 / 3)  # capital + continent
    assert b['wrong_claims_per_answer'] == pytest.approx(2 / 3)  # Lyon, twice
    assert b['claim_precision'] == pytest.approx(0.5)
    assert b['attributes']['capital'] == {'claims_per_answer': 1.0,
                                          'right_per_answer': pytest.approx(1 / 3)}
    assert b['score'] == pytest.approx(3 / 5)
    assert b['cut_share'] == pytest.approx(1 / 3) and b['abstention_share'] == pytest.approx(1 / 3)
    assert b['repeated_4gram_share'] > 0  # the wrong answer says the same sentence twice
    assert b['_parts'] == {'country-FR': (2, 4), 'country-FR-f1': (1, 1)}


def test_comparisons_and_estimate():
    assert comparisons(('dpo', 'maskdpo')) == [('dpo', 'base'), ('maskdpo', 'base'),
                                               ('maskdpo', 'dpo')]
    assert ('chosen', 'dpo') in comparisons(('dpo', 'maskdpo', 'chosen', 'rejected'))
    one, full = estimate(settings_from(train_seeds=[0])), estimate(settings_from())
    assert full['stages']['train'] == pytest.approx(3 * one['stages']['train'])  # 3 seeds
    quick = estimate(settings_from('quick'))
    assert quick['total'] < 45 * 60  # the quick preset fits 45 min by the measured rates
    # two threads (the default) divide the training rate, not the fixed cost per training
    one_thread = estimate(settings_from(train_seeds=[0], threads=1))['stages']['train']
    fixed = 2 * RATES['train_fixed']  # two trainings: dpo, maskdpo
    assert (one_thread - fixed) == pytest.approx(TWO_THREADS * (one['stages']['train'] - fixed))
    assert full['total'] > quick['total'] > 0


def test_seeded_paired_bootstrap_resamples_questions_within_seeds():
    from maskdpo_xtuner.evaluation.metrics import seeded_paired_bootstrap
    rng = np.random.default_rng(0)
    den = rng.integers(3, 8, size=40).astype(float)
    base = (np.round(den * 0.6), den)
    better = (np.minimum(den, base[0] + 1), den)  # one more right sentence per question
    worse = (np.maximum(0, base[0] - 1), den)
    out = seeded_paired_bootstrap([(better, base), (worse, base)], n_boot=500)
    assert out['seeds'] == 2 and out['seeds_positive'] == 1
    assert out['diff'] == pytest.approx(np.mean(out['per_seed']))
    assert out['ci_low'] < out['diff'] < out['ci_high']
    all_up = seeded_paired_bootstrap([(better, base)] * 3, n_boot=500)
    assert all_up['ci_low'] > 0 and all_up['seeds_positive'] == 3
    with pytest.raises(ValueError, match='same questions'):
        seeded_paired_bootstrap([((den[:3], den[:3]), base)])
