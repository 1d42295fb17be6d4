"""The real run's orchestration (maskdpo_xtuner/studies/real/run.py) up to where vLLM and xtuner start;
the whole run is measured in docs/real_model.md (about 40 min on 2 cores)."""
import os

import pytest

from conftest import SAMPLE
from maskdpo_xtuner.io.jsonl import read_jsonl, write_jsonl
from maskdpo_xtuner.studies.real.run import TRAIN_CODE, RealRun, settings_from
from maskdpo_xtuner.pipeline.stages import ROOT


def test_settings_refuse_unknown_names_and_keep_defaults():
    assert settings_from(k=3, seed=None).k == 3
    assert settings_from().top_k == 40 and settings_from().temperature == 0.8  # the paper's
    with pytest.raises(ValueError, match='unknown settings'):
        settings_from(topk=40)


def test_too_few_pairs_are_refused_before_training(tmp_path):
    """The general check (maskdpo_xtuner/train.py: required_pairs) says how many the config
    needs: 8 (1 pair x 8 accumulation steps, a warm-up of >= 1 iteration)."""
    (tmp_path / 'model').mkdir()
    (tmp_path / 'model' / 'config.json').write_text('{}')
    run = RealRun(settings_from(), str(tmp_path), str(tmp_path / 'model'))
    write_jsonl(run.path('pairs', 'pairs.jsonl'), read_jsonl(SAMPLE)[:7])
    with pytest.raises(RuntimeError, match=r'7 valid training pair\(s\), but this config needs at '
                                           r'least 8.*--train-questions'):
        run._train()
    assert not os.path.exists(run.path('train', 'xtuner'))


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
