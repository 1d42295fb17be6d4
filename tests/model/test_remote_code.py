"""A model folder's own Python runs on load only when the config turns trust_remote_code on
(before: MaskDPO read every model's config with trust_remote_code=True hard-wired)."""
import json
import shutil

import torch
from mmengine.config import ConfigDict
from transformers import AutoModelForCausalLM

from maskdpo_xtuner.model.maskdpo import build_reference, resolved_dtype

REMOTE = '''
import os
open(os.environ['REMOTE_MARKER'], 'w').write('the code of the folder ran')
from transformers import LlamaConfig
class EvilConfig(LlamaConfig):
    pass
'''


def folder_with_code(tiny_model_dir, tmp_path):
    d = tmp_path / 'model'
    shutil.copytree(tiny_model_dir, d)
    cfg = json.loads((d / 'config.json').read_text())
    cfg['auto_map'] = {'AutoConfig': 'configuration_evil.EvilConfig'}
    (d / 'config.json').write_text(json.dumps(cfg))
    (d / 'configuration_evil.py').write_text(REMOTE)
    return str(d)


def test_a_folders_code_does_not_run_unless_the_config_says_so(tiny_model_dir, tmp_path,
                                                               monkeypatch):
    marker = tmp_path / 'ran'
    monkeypatch.setenv('REMOTE_MARKER', str(marker))
    path = folder_with_code(tiny_model_dir, tmp_path)
    cfg = ConfigDict(pretrained_model_name_or_path=path, torch_dtype=torch.float32)
    assert resolved_dtype(cfg) == torch.float32
    build_reference(ConfigDict(type=AutoModelForCausalLM.from_pretrained, **cfg))
    assert not marker.exists()
    resolved_dtype(ConfigDict(cfg, trust_remote_code=True))  # the user turned it on
    assert marker.exists()
