"""The real run's orchestration (maskdpo_xtuner/studies/real/run.py) up to where vLLM and xtuner start;
the whole run is measured in docs/real_model.md (about 40 min on 2 cores)."""
import os

import pytest

from maskdpo_xtuner.io.jsonl import write_jsonl
from maskdpo_xtuner.studies.real.run import MIN_PAIRS, TRAIN_CODE, RealRun, settings_from
from maskdpo_xtuner.pipeline.stages import ROOT


def test_settings_refuse_unknown_names_and_keep_defaults():
    assert settings_from(k=3, seed=None).k == 3
    assert settings_from().top_k == 40 and settings_from().temperature == 0.8  # the paper's
    with pytest.raises(ValueError, match='unknown settings'):
        settings_from(topk=40)


def test_too_few_pairs_are_refused_before_training(tmp_path):
    run = RealRun(settings_from(), str(tmp_path), str(tmp_path / 'model'))
    write_jsonl(run.path('pairs', 'pairs.jsonl'), [{'id': i} for i in range(MIN_PAIRS - 1)])
    with pytest.raises(RuntimeError, match=f'{MIN_PAIRS - 1} training pairs.*--train-questions'):
        run._train()
    assert not os.path.exists(run.path('train', 'xtuner'))


def test_training_is_keyed_by_every_config_it_reads():
    from mmengine.config import Config
    cfg = Config.fromfile(os.path.join(ROOT, TRAIN_CODE[0]))
    assert cfg.filename.endswith(TRAIN_CODE[0])
    text = open(os.path.join(ROOT, TRAIN_CODE[0])).read()
    for rel in TRAIN_CODE[1:3]:  # the configs the child inherits
        assert os.path.exists(os.path.join(ROOT, rel))
        assert os.path.basename(rel).split('.')[0] in text
