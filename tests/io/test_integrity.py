"""Issue 10: long jobs bound to what made them, every bad input named. One test (or a few) per
numbered defect of the issue; each fails on the code before the fix (main at 36b436b)."""
import json
import os

import pytest

from conftest import ROOT, SAMPLE, load_script
from drill_jobs import EchoModel, FactJudge, KeywordAnnotator
from maskdpo_xtuner.io.jsonl import ResumableJsonlWriter, read_jsonl, write_jsonl

sample, annotate = load_script('sample'), load_script('annotate')
eval_anah, eval_factscore = load_script('eval_anah'), load_script('eval_factscore')
build_pairs, report = load_script('build_pairs'), load_script('report')

QUESTIONS = [{'id': f'q{i}', 'question': f'Who was person {i}?', 'document': f'Doc {i}.'}
             for i in range(4)]


def qfile(tmp_path, records=QUESTIONS, name='q.jsonl'):
    write_jsonl(str(tmp_path / name), records)
    return str(tmp_path / name)


def run_sample(tmp_path, out, *extra, backend=None):
    return sample.main(['--questions', qfile(tmp_path), '--out', str(out), '--model', 'A',
                        '--n', '2', '--seed', '0', *extra], backend=backend or EchoModel())


class FolderModel(EchoModel):
    """The fake model, fingerprinted by a folder of 'weights', as the library fingerprints a
    model folder (tested on its own below)."""

    def __init__(self, folder):
        super().__init__()
        self.folder = folder

    def fingerprint(self):
        from maskdpo_xtuner.io.manifest import fingerprint
        from maskdpo_xtuner.pipeline import BackendSpec
        return fingerprint(BackendSpec('transformers', self.folder))


def test_1_a_model_folder_is_fingerprinted_by_content_a_served_model_by_name(tmp_path):
    from maskdpo_xtuner.io.manifest import fingerprint
    from maskdpo_xtuner.pipeline import BackendSpec
    (tmp_path / 'config.json').write_text('{}')
    (tmp_path / 'model.safetensors').write_bytes(b'1234')
    a = fingerprint(BackendSpec('transformers', str(tmp_path)))
    assert a['kind'] == 'weights' and a['files'] == 2
    (tmp_path / 'model.safetensors').write_bytes(b'1235')  # same size, other bytes
    assert fingerprint(BackendSpec('transformers', str(tmp_path)))['sha256'] != a['sha256']
    served = fingerprint(BackendSpec('openai', 'anah-v2', endpoints=['http://127.0.0.1:9']))
    assert served['kind'] == 'served' and served['name'] == 'anah-v2'
    assert 'not its weights' in served['note'] and served['endpoint_models'] == [None]


# ---------------------------------------------------------------- 1. resumed with other settings
@pytest.mark.parametrize('change', [['--n', '4'], ['--temperature', '1.5'], ['--model', 'B']])
def test_1_sample_resumed_with_other_settings_is_refused(tmp_path, change):
    out = tmp_path / 'out.jsonl'
    run_sample(tmp_path, out)
    lines = out.read_text().splitlines(True)
    out.write_text(''.join(lines[:2]))  # an interrupted run: 2 of 4 questions
    argv = ['--questions', qfile(tmp_path), '--out', str(out), '--model', 'A', '--n', '2',
            '--seed', '0']
    i = argv.index(change[0]) if change[0] in argv else len(argv)
    argv[i:i + 2] = change
    with pytest.raises(SystemExit, match='made by another job') as e:
        sample.main(argv, backend=EchoModel())
    assert change[0].lstrip('-').replace('model', 'model_name') in str(e.value)
    assert out.read_text() == ''.join(lines[:2])  # nothing mixed in
    sample.main(argv + ['--overwrite'], backend=EchoModel())  # starts again, all new
    assert len(read_jsonl(str(out))) == 4


def test_1_new_weights_at_the_same_path_are_refused(tmp_path):
    weights = tmp_path / 'model'
    weights.mkdir()
    (weights / 'model.safetensors').write_bytes(b'weights v1')
    out = tmp_path / 'out.jsonl'
    run_sample(tmp_path, out, backend=FolderModel(str(weights)))
    (weights / 'model.safetensors').write_bytes(b'weights v2')
    with pytest.raises(SystemExit, match=r'model\.sha256'):
        run_sample(tmp_path, out, backend=FolderModel(str(weights)))


def test_1_annotations_carry_their_annotator_and_another_is_refused(tmp_path):
    samples = tmp_path / 's.jsonl'
    run_sample(tmp_path, samples)
    out = str(tmp_path / 'ann.jsonl')
    annotate.main(['--input', str(samples), '--out', out], annotator=KeywordAnnotator())
    assert all(r['annotator']['name'] == 'keyword' for r in read_jsonl(out))

    class OtherAnnotator(KeywordAnnotator):
        name = 'other'
    with pytest.raises(SystemExit, match='settings.annotator'):
        annotate.main(['--input', str(samples), '--out', out], annotator=OtherAnnotator())


# ---------------------------------------------------------------- 2. FActScore generations
def test_2_factscore_generations_are_not_reused_for_another_model(tmp_path):
    kb = str(tmp_path / 'kb.jsonl')
    write_jsonl(kb, [{'title': n, 'text': f'{n} was born in Lyon.'} for n in ('Ada', 'Kofi')])
    ents = tmp_path / 'e.txt'
    ents.write_text('Ada\nKofi\n')
    argv = ['--entities', str(ents), '--knowledge', kb, '--out-dir', str(tmp_path / 'fs'),
            '--judge-model', 'judge', '--gamma', '0']
    eval_factscore.main(argv + ['--model', 'A'], backend=EchoModel(), judge=FactJudge())
    with pytest.raises(SystemExit, match='settings.model_name'):
        eval_factscore.main(argv + ['--model', 'B'], backend=EchoModel(), judge=FactJudge())


# ---------------------------------------------------------------- 3. evaluations keyed by content
def run_eval(tmp_path, questions=QUESTIONS, backend=None):
    return eval_anah.main(['--questions', qfile(tmp_path, questions), '--model', 'policy',
                           '--out-dir', str(tmp_path / 'eval'), '--n-boot', '50'],
                          backend=backend or EchoModel(), judge=KeywordAnnotator())


def test_3_eval_anah_new_weights_at_the_same_path_do_not_return_old_metrics(tmp_path):
    weights = tmp_path / 'model'
    weights.mkdir()
    (weights / 'model.safetensors').write_bytes(b'weights v1')
    run_eval(tmp_path, backend=FolderModel(str(weights)))
    (weights / 'model.safetensors').write_bytes(b'weights v2')
    with pytest.raises(SystemExit, match=r'model\.sha256'):
        run_eval(tmp_path, backend=FolderModel(str(weights)))


def test_3_eval_anah_cut_questions_file_is_refused(tmp_path):
    run_eval(tmp_path)
    with pytest.raises(SystemExit, match='inputs.questions'):
        run_eval(tmp_path, questions=QUESTIONS[:2])


# ---------------------------------------------------------------- 4. one writer per output
def test_4_a_second_writer_is_refused(tmp_path):
    out = tmp_path / 'out.jsonl'
    with ResumableJsonlWriter(str(out), key=lambda r: r['id']):  # another job holds it
        with pytest.raises(SystemExit, match='being written by another process'):
            run_sample(tmp_path, out)
    run_sample(tmp_path, out)  # released
    assert len(read_jsonl(str(out))) == 4
    # a file two writers filled (every id twice) is not called complete by a rerun
    out.write_text(out.read_text() * 2)
    with pytest.raises(SystemExit, match=r"item 'q0' is written twice \(record 5\)"):
        run_sample(tmp_path, out)


# ---------------------------------------------------------------- 5. responses as a string
def test_5_responses_given_as_a_string_are_refused(tmp_path):
    inp = qfile(tmp_path, [{'id': 1, 'question': 'Q?', 'responses': 'Ada was born.',
                            'document': 'D'}], 's.jsonl')
    with pytest.raises(SystemExit, match=r"s\.jsonl:1: \(id 1\) field 'responses'"):
        annotate.main(['--input', inp, '--out', str(tmp_path / 'a.jsonl')],
                      annotator=KeywordAnnotator())


# ---------------------------------------------------------------- 6. bad input named
def test_6_non_utf8_is_named_by_every_tool(tmp_path):
    bad = tmp_path / 'bad.jsonl'
    bad.write_bytes(b'{"id": 1, "question": "caf\xe9?"}\n')
    calls = [lambda: sample.main(['--questions', str(bad), '--out', str(tmp_path / 'o'),
                                  '--model', 'A'], backend=EchoModel()),
             lambda: annotate.main(['--input', str(bad), '--out', str(tmp_path / 'a')],
                                   annotator=KeywordAnnotator()),
             lambda: build_pairs.main(['--input', str(bad), '--out', str(tmp_path / 'p')]),
             lambda: eval_anah.main(['--questions', str(bad), '--model', 'A', '--out-dir',
                                     str(tmp_path / 'e')], backend=EchoModel(),
                                    judge=KeywordAnnotator())]
    for call in calls:
        with pytest.raises(SystemExit, match=r'bad\.jsonl:1: .*not UTF-8'):
            call()


def annotated(tmp_path, **over):
    rec = {'id': 'q7', 'question': 'Who?', 'responses': ['Ada was born. She won.', 'Ada won.'],
           'annotations': [{'sentences': [{'start': 0, 'end': 13, 'text': 'Ada was born.',
                                           'label': 'ok'},
                                          {'start': 14, 'end': 22, 'text': 'She won.',
                                           'label': 'true'}]},
                           {'sentences': [{'start': 0, 'end': 8, 'text': 'Ada won.',
                                           'label': 'contradictory'}]}]}
    rec.update(over)
    path = tmp_path / 'ann.jsonl'
    path.write_text(json.dumps({'id': 'q1', 'question': 'x', 'responses': [],
                                'annotations': []}) + '\n' + json.dumps(rec) + '\n')
    return str(path)


def test_6_build_pairs_names_file_line_id_and_field(tmp_path):
    with pytest.raises(SystemExit, match=r"ann\.jsonl:2: \(id 'q7'\) field "
                       r"'annotations\[0\]\.sentences\[1\]\.label': unknown sentence label "
                       r"'true'"):
        build_pairs.main(['--input', annotated(tmp_path), '--out', str(tmp_path / 'p.jsonl')])
    path = annotated(tmp_path, annotations=None)
    with pytest.raises(SystemExit, match=r"ann\.jsonl:2: \(id 'q7'\) field 'annotations'"):
        build_pairs.main(['--input', path, '--out', str(tmp_path / 'p.jsonl')])
    summary = build_pairs.main(['--input', path, '--out', str(tmp_path / 'p.jsonl'),
                                '--on-error', 'skip'])
    assert summary['invalid_skipped'] == {'bad_type': 1} and summary['questions'] == 1


def test_6_missing_fields_are_named_not_tracebacks(tmp_path):
    inp = qfile(tmp_path, [{'id': 1, 'responses': ['A.']}], 's.jsonl')  # no question
    with pytest.raises(SystemExit, match=r"s\.jsonl:1: \(id 1\) field 'question'"):
        annotate.main(['--input', inp, '--out', str(tmp_path / 'a')],
                      annotator=KeywordAnnotator())
    qs = qfile(tmp_path, [{'id': 1, 'question': 5}], 'qq.jsonl')
    with pytest.raises(SystemExit, match=r"qq\.jsonl:1: \(id 1\) field 'question': expected"):
        eval_anah.main(['--questions', qs, '--model', 'A', '--out-dir', str(tmp_path / 'e')],
                       backend=EchoModel(), judge=KeywordAnnotator())
    (tmp_path / 'm.json').write_text('{"run": "greedy"}')
    with pytest.raises(SystemExit, match=r"m\.json: field 'runs': missing"):
        report.main(['--runs', f'A={tmp_path / "m.json"}'])


def test_6_a_json_array_file_is_named_as_such(tmp_path):
    path = tmp_path / 'q.json'
    path.write_text(json.dumps(QUESTIONS, indent=1))
    with pytest.raises(SystemExit, match=r'q\.json:1: .*JSON array.*JSON Lines'):
        sample.main(['--questions', str(path), '--out', str(tmp_path / 'o'), '--model', 'A'],
                    backend=EchoModel())


def test_6_report_refuses_an_empty_evaluation(tmp_path):
    run_eval(tmp_path, questions=QUESTIONS[:1])
    doc = json.loads((tmp_path / 'eval' / 'metrics.json').read_text())
    doc['runs'][0]['n_sentences'] = 0
    (tmp_path / 'empty.json').write_text(json.dumps(doc))
    with pytest.raises(SystemExit, match='judged 0 sentences'):
        report.main(['--runs', f'A={tmp_path / "empty.json"}', '--plot',
                     str(tmp_path / 'p.png')])
    assert not (tmp_path / 'p.png').exists()


# ---------------------------------------------------------------- 7. prompt length
@pytest.fixture(scope='module')
def short_model(tmp_path_factory):
    from maskdpo_xtuner.offline.tiny import build_tiny_llama, train_bpe_tokenizer
    out = str(tmp_path_factory.mktemp('short') / 'model')
    build_tiny_llama(train_bpe_tokenizer(), out, max_position_embeddings=96)
    return out


def test_7_a_prompt_longer_than_the_context_is_named_or_skipped(tmp_path, short_model):
    qs = [{'id': 'short', 'question': 'Who was Ada?'},
          {'id': 'long', 'question': 'Who was Ada? ' * 200},
          {'id': 'short2', 'question': 'Where is Lyon?'}]
    argv = ['--questions', qfile(tmp_path, qs), '--model', short_model, '--n', '2',
            '--max-new-tokens', '4', '--batch-size', '6']
    with pytest.raises(SystemExit, match=r"id 'long': the prompt takes \d+ tokens.*context "
                       r'of 96 tokens'):
        sample.main(argv + ['--out', str(tmp_path / 'o1.jsonl')])
    done = sample.main(argv + ['--out', str(tmp_path / 'o2.jsonl'), '--on-error', 'skip'])
    assert done['skipped'] == {'prompt_too_long': 1}
    assert [r['id'] for r in read_jsonl(str(tmp_path / 'o2.jsonl'))] == ['short', 'short2']


# ---------------------------------------------------------------- 9. the writer's last line
def test_9_a_complete_last_line_without_newline_is_kept(tmp_path, capsys):
    out = tmp_path / 'o.jsonl'
    out.write_text('{"id": 1}\n{"id": 2}')
    with ResumableJsonlWriter(str(out), key=lambda r: r['id']) as w:
        assert w.done == {1, 2}
        w.write({'id': 3})
    assert out.read_text() == '{"id": 1}\n{"id": 2}\n{"id": 3}\n'
    out.write_text('{"id": 1}\n{"id": 2, "x"')
    with ResumableJsonlWriter(str(out), key=lambda r: r['id']) as w:
        assert w.done == {1}
    assert 'dropped a torn last line' in capsys.readouterr().err
    assert out.read_text() == '{"id": 1}\n'


# ---------------------------------------------------------------- 11. training data first
def test_11_training_data_is_validated_before_any_model_is_built(tmp_path, capsys):
    bad = tmp_path / 'bad.jsonl'
    rec = json.loads(open(SAMPLE, encoding='utf-8').readline())
    rec['chosen_item']['type'][0] = 'true'
    bad.write_text(json.dumps(rec) + '\n')
    rc = load_script('train').main([os.path.join(ROOT, 'configs', 'maskdpo',
                                                 'tiny_cpu_maskdpo.py'),
                                    '--work-dir', str(tmp_path / 'w'), '--cfg-options',
                                    f"train_dataloader.dataset.data_files=['{bad}']"])
    out = capsys.readouterr()
    assert rc == 2 and "bad.jsonl:1: field 'chosen_item.type[0]'" in out.err
    assert '$ ' not in out.out  # the trainer (which loads the models first) never started


# ---------------------------------------------------------------- 12. unlabelled response text
def test_12_text_no_sentence_covers_is_unlabelled_counted_and_masked(tmp_path, bpe_tokenizer):
    import torch
    from maskdpo_xtuner.dataset import build_maskdpo_dataset
    from maskdpo_xtuner.labels import SEPARATOR, UNLABELLED
    from maskdpo_xtuner.model.loss import token_weights
    pair = {'prompt': 'Tell me about cats.',
            'chosen': 'Cats purr. Cats can fly. Cats sleep.',
            'chosen_item': {'sents': ['Cats purr.', 'Cats sleep.'], 'type': ['ok', 'ok']},
            'rejected': 'Cats bark.\n- Cats purr.',
            'rejected_item': {'sents': ['Cats bark.', 'Cats purr.'],
                              'type': ['contradictory', 'ok']}}
    path = str(tmp_path / 'p.jsonl')
    write_jsonl(path, [pair])
    ds = build_maskdpo_dataset(path, bpe_tokenizer, max_length=128, progress=False)
    chosen = ds[0]['chosen_token_class']
    assert chosen.count(UNLABELLED) >= 3 and ds.report['unlabelled_tokens'] == chosen.count(
        UNLABELLED)
    assert UNLABELLED not in ds[0]['rejected_token_class']  # "\n- " stays a separator
    assert SEPARATOR in ds[0]['rejected_token_class']
    cls = torch.tensor([chosen, chosen])
    for mode in ('both', 'chosen', 'rejected', 'none'):  # masked modes drop them; vanilla DPO,
        w = token_weights(cls, mode)                       # which reads no sentence, counts them
        assert all(w[r, i] == (mode == 'none') for r in (0, 1) for i, c in enumerate(chosen)
                   if c == UNLABELLED)
    kept = build_maskdpo_dataset(path, bpe_tokenizer, max_length=128, progress=False,
                                 unlabelled_tokens='keep')
    assert UNLABELLED not in kept[0]['chosen_token_class']
    with pytest.raises(ValueError, match=r"p\.jsonl:1: field 'chosen_item.sents'.*covered by "
                       'no sentence'):
        build_maskdpo_dataset(path, bpe_tokenizer, max_length=128, progress=False,
                              unlabelled_tokens='error')


def test_6_on_error_skip_counts_what_was_left_out_and_why(tmp_path, capsys):
    path = tmp_path / 'q.jsonl'
    path.write_bytes(b'{"id": 1, "question": "Who?"}\n{"id": 2}\nnot json\n'
                     b'{"id": 4, "question": "caf\xe9"}\n{"id": 5, "question": "Where?"}\n')
    sample.main(['--questions', str(path), '--out', str(tmp_path / 'o.jsonl'), '--model', 'A',
                 '--n', '1', '--on-error', 'skip'], backend=EchoModel())
    assert [r['id'] for r in read_jsonl(str(tmp_path / 'o.jsonl'))] == [1, 5]
    err = capsys.readouterr().err
    assert 'skipped 3 invalid record(s)' in err
    for reason in ('missing_field: 1', 'bad_json: 1', 'not_utf8: 1'):
        assert reason in err


def test_7_a_backend_that_cannot_count_tokens_is_not_checked():
    from maskdpo_xtuner.pipeline.context import check_context
    items = [('a', [{'role': 'user', 'content': 'x' * 10 ** 6}])]
    assert check_context(items, EchoModel(), 512) == ([0], [])
