"""The HTML view (maskdpo_xtuner/view, tools/show.py): what it shows is what training computes,
checked on the data and, in headless Chromium, through the DOM of the rendered page."""
import json
import os
import re
import time
from html.parser import HTMLParser

import pytest
import torch
from conftest import ROOT, SAMPLE, load_script

from maskdpo_xtuner.dataset import SEPARATOR, read_pairs, tokenize_pair, validate_record
from maskdpo_xtuner.dataset.tokenize import render
from maskdpo_xtuner.io.jsonl import write_jsonl
from maskdpo_xtuner.model.loss import MASK_MODES, token_weights
from maskdpo_xtuner.train import model_path_options
from maskdpo_xtuner.view import build_pairs_view, page_data, render_page, write_page
from maskdpo_xtuner.view.browser import dump_dom, file_url, find_chromium

CHROMIUM = find_chromium()
_no_browser = pytest.mark.skipif(
    CHROMIUM is None, reason='chromium is not installed: run tools/setup_browser.sh '
    "(installs Debian's chromium package)")


def needs_browser(fn):
    """A test that renders the page in headless Chromium (marker ``browser``)."""
    return pytest.mark.browser(_no_browser(fn))


def record(chosen, rejected, c_sents, c_labels, r_sents, r_labels, question='Who is Ada?'):
    return {'prompt': [{'role': 'user', 'content': question}],
            'chosen': [{'role': 'assistant', 'content': chosen}],
            'rejected': [{'role': 'assistant', 'content': rejected}],
            'chosen_item': {'sents': c_sents, 'type': c_labels},
            'rejected_item': {'sents': r_sents, 'type': r_labels}}


BANG = record('Yes! Ada won.', 'No! Ada lost.', ['Yes!', 'Ada won.'], ['ok', 'contradictory'],
              ['No!', 'Ada lost.'], ['hallucination', 'no_hallucination'], 'Did Ada win?')
CHINESE = record('艾达是英国数学家。她出生于巴黎。', '艾达是法国数学家。她出生于伦敦。',
                 ['艾达是英国数学家。', '她出生于巴黎。'], ['ok', 'contradictory'],
                 ['艾达是法国数学家。', '她出生于伦敦。'], ['contradictory', 'ok'], '艾达是谁？')
# a sentence boundary inside the token ' won': a mixed token, masked on both sides
MIXED = record('Ada won.', 'Ada lost.', ['Ada wo', 'n.'], ['ok', 'unverifiable'],
               ['Ada lost.'], ['unverifiable'])
# no hallucinated sentence in the rejected: the paper's filter drops this pair
ALL_OK = record('Ada won.', 'Ada won twice.', ['Ada won.'], ['ok'], ['Ada won twice.'], ['ok'])


def expected_counted(side, cls, mode):
    """The loss's table (model/loss.py docstring), written out independently of its code."""
    masks_chosen, masks_rejected = mode in ('both', 'chosen'), mode in ('both', 'rejected')
    if cls in ('separator', 'end'):
        return True  # separator_tokens = end_tokens = 'keep'
    if cls == 'correct':
        return side == 'chosen' or not masks_rejected
    if cls == 'hallucinated':
        return side == 'rejected' or not masks_chosen
    assert cls == 'mixed'
    return not (masks_chosen if side == 'chosen' else masks_rejected)


def expected_classes(texts, response, sentences):
    """Classes from the characters each displayed token covers (data/README.md's rule); an
    empty token continues the character before it (a byte-level split)."""
    out, pos = [], 0
    for t in texts:
        a, b = (pos, pos + len(t)) if t else (pos - 1, pos)
        pos += len(t)
        if a >= len(response):
            out.append('end')
            continue
        touched = {h for s, e, h in sentences if s < b and a < e}
        out.append('separator' if not touched else 'mixed' if len(touched) == 2 else
                   'hallucinated' if True in touched else 'correct')
    return out


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp('view')
    path = str(d / 'pairs.jsonl')
    write_jsonl(path, [BANG, CHINESE, ALL_OK, MIXED])
    with open(path, 'a', encoding='utf-8') as f:
        f.write('{"prompt": "broken"}\n')  # invalid: counted, not shown
    return d, path


# ------------------------------------------------------------------------ data, no browser

def test_view_shows_the_training_classes_and_weights(bpe_tokenizer):
    view = build_pairs_view(SAMPLE, bpe_tokenizer, max_length=256)
    pairs, _ = read_pairs(SAMPLE)
    assert len(view['pairs']) == len(pairs) == 32
    for p, pair in zip(view['pairs'], pairs):
        item = tokenize_pair(bpe_tokenizer, pair, 256)
        for side in ('chosen', 'rejected'):
            cls = [c for c in item[f'{side}_token_class'] if c >= 0]
            assert p[side]['cls'] == cls
            assert p[side]['ids'] == item[f'{side}_ids'][-len(cls):]
            # the shown text is the rendered response and end-of-turn suffix, each char once
            text, start, _ = render(bpe_tokenizer, pair.prompt, getattr(pair, side))
            assert ''.join(p[side]['text']) == text[start:] and p[side]['cut'] == ''
            row = torch.tensor([cls, cls])  # row 0 is read as chosen, row 1 as rejected
            for i, mode in enumerate(MASK_MODES):
                w = token_weights(row, mode)[0 if side == 'chosen' else 1]
                assert [bool(int(d, 16) >> i & 1) for d in p[side]['w']] == w.bool().tolist()
    # the file summary: masked share as the loss logs it (no mask in vanilla DPO)
    s = view['summary']
    assert s['masked_share']['none'] == 0 and 0 < s['masked_share']['chosen'] < \
        s['masked_share']['both'] < 1
    assert s['tokens']['chosen']['end'] == 32 and s['read'] == s['valid'] == s['trained'] == 32


def test_dropped_invalid_and_truncated_pairs(bpe_tokenizer, files):
    _, path = files
    view = build_pairs_view(path, bpe_tokenizer, max_length=256)
    s = view['summary']
    assert (s['read'], s['valid'], s['trained']) == (5, 4, 3)
    assert s['invalid'] == {'missing_field': 1}
    assert s['dropped'] == {'no_hallucinated_in_rejected': 1}
    assert [p['dropped'] for p in view['pairs']] == [None, None, 'no_hallucinated_in_rejected',
                                                     None]
    assert view['pairs'][0]['chosen']['sents'] == [['Yes!', 'ok', False],
                                                   ['Ada won.', 'contradictory', True]]
    # truncation: the cut text is shown apart and its tokens are gone with their classes
    n_prompt = tokenize_pair(bpe_tokenizer, validate_record(BANG))['prompt_tokens']
    short = build_pairs_view(path, bpe_tokenizer, n_prompt + 4)['pairs'][0]['chosen']
    full = view['pairs'][0]['chosen']
    n = len(short['cls'])
    assert n == 4 and short['cls'] == full['cls'][:n]
    assert ''.join(short['text']) + short['cut'] == 'Yes! Ada won.'
    masked = build_pairs_view(path, bpe_tokenizer, 256, separator_tokens='mask')['pairs'][0]
    sep = [i for i, c in enumerate(masked['chosen']['cls']) if c == SEPARATOR]
    assert sep and all(masked['chosen']['w'][i] == '0' for i in sep)


def test_page_is_self_contained(bpe_tokenizer, files):
    _, path = files
    page = render_page(page_data(build_pairs_view(path, bpe_tokenizer, 256),
                                 title='</script><b>x'))
    code = page.split('<script id="data"')[0] + page.split('</script>', 1)[1]
    for needle in ('http:', 'https:', '<link', ' src=', '@import', 'url(', '@font-face'):
        assert needle not in code
    assert page.count('</script>') == 2  # the data cannot close its script element
    assert '<title>&lt;/script&gt;&lt;b&gt;x</title>' in page
    with pytest.raises(ValueError, match='mask_mode'):
        page_data({'pairs': []}, mask_mode='sometimes')


# --------------------------------------------------------------------------- in the browser

class Dom(HTMLParser):
    """Tokens per (pair index, side), answers' sentences per model, and <body> attributes."""

    def __init__(self, text):
        super().__init__()
        self.tokens, self.sents, self.body, self.articles = {}, {}, {}, []
        self._pair = self._side = self._model = None
        self._cur = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == 'body':
            self.body = a
        elif tag == 'article':
            self.articles.append(a)
            self._pair = a.get('data-index')
        elif tag == 'div' and 'data-side' in a:
            self._side = a['data-side']
        elif tag == 'div' and 'data-model' in a:
            self._model = a['data-model']
        elif tag == 'span' and 'tok' in a.get('class', '').split() and self._side:
            self._cur = dict(a, text='')
            self.tokens.setdefault((self._pair, self._side), []).append(self._cur)
        elif tag == 'span' and 'data-label' in a and self._model:
            self._cur = dict(a, text='')
            self.sents.setdefault(self._model, []).append(self._cur)

    def handle_endtag(self, tag):
        if tag in ('span', 'sup'):
            self._cur = None
        if tag == 'article':
            self._pair = self._side = self._model = None

    def handle_data(self, data):
        if self._cur is not None:
            self._cur['text'] += data


def load(html_path, fragment=''):
    dom = Dom(dump_dom(file_url(html_path, fragment)))
    assert dom.body.get('data-ready') == '1', 'the page script did not run'
    return dom


@pytest.fixture(scope='module')
def page(bpe_tokenizer, files):
    d, path = files
    out = str(d / 'view.html')
    write_page(out, build_pairs_view(path, bpe_tokenizer, 256), mask_mode='both')
    return out


def shown(tokens):
    return [t['text'].replace('\u21b5', '') for t in tokens]


@needs_browser
@pytest.mark.parametrize('mode', MASK_MODES)
def test_browser_shows_classes_and_counted_marks(page, mode):
    dom = load(page, f'mode={mode}' if mode != 'both' else '')
    assert dom.body['data-mode'] == mode
    for idx, rec in (('0', BANG), ('1', CHINESE), ('3', MIXED)):
        for side in ('chosen', 'rejected'):
            toks = dom.tokens[idx, side]
            response = rec[side][0]['content']
            assert ''.join(shown(toks)) == response + '<|eot_id|>'
            pair = validate_record(rec)
            cls = expected_classes(shown(toks), response, getattr(pair, f'{side}_sentences'))
            assert [t['data-cls'] for t in toks] == cls
            assert [t['class'].split()[1] for t in toks] == [f'c-{c}' for c in cls]
            want = [expected_counted(side, c, mode) for c in cls]
            assert [t['data-counted'] == '1' for t in toks] == want
            assert [('on' if w else 'off') in t['class'].split() for t, w in zip(toks, want)] \
                == [True] * len(toks)
    # the '!' (token id 0, which XTuner's DPO would drop as padding) is a counted token
    bang_c = [t for t in dom.tokens['0', 'chosen'] if t['data-id'] == '0']
    bang_r = [t for t in dom.tokens['0', 'rejected'] if t['data-id'] == '0']
    assert [t['text'] for t in bang_c + bang_r] == ['!', '!']
    assert (bang_c[0]['data-cls'], bang_r[0]['data-cls']) == ('correct', 'hallucinated')
    # correct in the chosen and hallucinated in the rejected: counted under every mode
    assert bang_c[0]['data-counted'] == bang_r[0]['data-counted'] == '1'
    mixed = [t for t in dom.tokens['3', 'chosen'] if t['data-cls'] == 'mixed']
    assert [t['text'] for t in mixed] == [' won']
    # the Chinese record has tokens of both labels and byte-level continuation tokens
    zh = dom.tokens['1', 'chosen']
    assert {'correct', 'hallucinated', 'end'} <= {t['data-cls'] for t in zh}
    assert any(t['text'] == '' for t in zh)


@needs_browser
def test_browser_filters_and_summary(page):
    dom = load(page, 'status=dropped')
    assert [a['data-index'] for a in dom.articles] == ['2']
    assert dom.articles[0]['data-dropped'] == 'no_hallucinated_in_rejected'
    dom = load(page, 'label=contradictory')
    assert [a['data-index'] for a in dom.articles] == ['0', '1']
    dom = load(page, 'q=%E8%89%BE%E8%BE%BE')  # 艾达
    assert [a['data-index'] for a in dom.articles] == ['1']
    dom = load(page, 'label=contradictory&status=trained')
    assert [a['data-index'] for a in dom.articles] == ['0', '1']
    assert re.search(r'data-matching="2"', dump_dom(file_url(page, 'label=contradictory')))


# ------------------------------------------------------------------------------ evaluations

QUESTIONS = [{'id': 'ada', 'question': 'Who was Ada?', 'document': 'Ada was a mathematician.'},
             {'id': 'zh', 'question': '艾达是谁？', 'document': '艾达是数学家。'}]


class Model:
    """Answers per evaluated model: 'WRONG' / '错' sentences are judged contradictory."""

    def __init__(self, answers):
        self.answers = answers

    def generate(self, conversations, params, n=1, seeds=None):
        ids = {q['question']: q['id'] for q in QUESTIONS}
        return [[self.answers[ids[c[-1]['content']]]] for c in conversations]


class Judge:
    def annotate(self, tasks):
        from maskdpo_xtuner.annotate import SentenceLabel
        return [SentenceLabel('contradictory' if ('WRONG' in t.sentence or '错' in t.sentence)
                              else 'ok') for t in tasks]


@pytest.fixture(scope='module')
def eval_dirs(tmp_path_factory):
    d = tmp_path_factory.mktemp('evals')
    qpath = str(d / 'questions.jsonl')
    write_jsonl(qpath, QUESTIONS)
    answers = {'base': {'ada': 'Ada was a poet. Ada was WRONG.', 'zh': '艾达是错的。她是数学家。'},
               'maskdpo': {'ada': 'Ada was a mathematician.', 'zh': '艾达是数学家。'}}
    dirs = {}
    for name, ans in answers.items():
        dirs[name] = str(d / name)
        load_script('eval_anah').main(['--questions', qpath, '--model', name, '--out-dir',
                                     dirs[name], '--n-boot', '20'],
                                    backend=Model(ans), judge=Judge())
    return dirs


def test_show_cli_writes_pairs_and_evaluations(tmp_path, files, eval_dirs, bpe_tokenizer):
    _, path = files
    tok = str(tmp_path / 'tok')
    bpe_tokenizer.save_pretrained(tok)
    out = str(tmp_path / 'v.html')
    show = load_script('show')
    with pytest.raises(SystemExit, match=r"pairs\.jsonl:5: field 'chosen': missing"):
        show.main(['--pairs', path, '--tokenizer', tok, '--out', out])  # an invalid record
    show.main(['--pairs', path, '--tokenizer', tok, '--max-length', '64', '--mask-mode',
               'chosen', '--evals', *(f'{k}={v}' for k, v in eval_dirs.items()), '--out', out,
               '--on-error', 'skip'])  # counted in the page instead
    with open(out, encoding='utf-8') as f:
        page = f.read()
    data = json.loads(re.search(r'<script id="data" type="application/json">(.*?)</script>',
                                page, re.DOTALL).group(1))
    assert data['mode'] == 'chosen' and data['pairs']['summary']['max_length'] == 64
    assert data['pairs']['summary']['invalid'] == {'missing_field': 1}
    ev = data['evals']
    assert [m['name'] for m in ev['models']] == ['base', 'maskdpo']
    assert [q['id'] for q in ev['questions']] == ['ada', 'zh']
    base_zh = ev['questions'][1]['answers'][0]
    assert base_zh['model'] == 0 and base_zh['segments'] == [['艾达是错的。', 'contradictory'],
                                                             ['她是数学家。', 'ok']]
    assert ev['summary']['labels'] == {'contradictory': 2, 'ok': 4}
    with pytest.raises(SystemExit, match='tokenizer'):
        show.main(['--pairs', path, '--out', out])
    with pytest.raises(SystemExit, match='NAME=DIR'):
        show.main(['--evals', 'nodir', '--out', out])


def test_show_reads_a_training_config(tmp_path, tiny_model_dir):
    """--config: the config's data, tokenizer, max_length and masking settings."""
    out = str(tmp_path / 'c.html')
    cfg = os.path.join(ROOT, 'configs', 'world', 'world_dpo_cpu.py')  # mask_mode = 'none'
    opts = [f'{k}={v}' for k, v in model_path_options(cfg, tiny_model_dir).items()]
    data_files = os.path.join(ROOT, 'data', 'sample_pairs.jsonl')
    load_script('show').main(['--config', cfg, '--cfg-options', *opts,
                            f'train_dataloader.dataset.data_files={data_files}',
                            'train_dataloader.dataset.max_length=200', '--out', out])
    with open(out, encoding='utf-8') as f:
        page = f.read()
    data = json.loads(re.search(r'<script id="data" type="application/json">(.*?)</script>',
                                page, re.DOTALL).group(1))
    assert data['mode'] == 'none' and data['pairs']['summary']['max_length'] == 200
    assert data['pairs']['summary']['files'] == [data_files]
    assert data['pairs']['summary']['valid'] == 32


@needs_browser
def test_browser_shows_judged_answers_per_model(tmp_path, eval_dirs):
    from maskdpo_xtuner.view import build_evals_view
    out = write_page(str(tmp_path / 'e.html'), evals=build_evals_view(eval_dirs))
    dom = load(out)
    assert dom.body['data-tab'] == 'evals' and len(dom.articles) == 2
    labels = {m: [(s['text'], s['data-label'], s['class']) for s in v]
              for m, v in dom.sents.items()}
    assert labels['base'] == [('Ada was a poet.ok', 'ok', 'sent v-correct'),
                              ('Ada was WRONG.contradictory', 'contradictory',
                               'sent v-hallucinated'),
                              ('艾达是错的。contradictory', 'contradictory', 'sent v-hallucinated'),
                              ('她是数学家。ok', 'ok', 'sent v-correct')]
    assert [x[1] for x in labels['maskdpo']] == ['ok', 'ok']
    dom = load(out, 'label=contradictory&model=1')  # maskdpo has no contradictory sentence
    assert dom.articles == []
    dom = load(out, 'model=1')
    assert set(dom.sents) == {'maskdpo'}


# ------------------------------------------------------------------------------ large files

@needs_browser
@pytest.mark.slow
def test_five_thousand_pairs_stay_usable(tmp_path, bpe_tokenizer):
    with open(SAMPLE, encoding='utf-8') as f:
        recs = [json.loads(line) for line in f]
    big = []
    for k in range(5000):
        rec = dict(recs[k % len(recs)])
        rec['prompt'] = [{'role': 'user', 'content': f'{rec["prompt"][-1]["content"]} #{k}'}]
        big.append(rec)
    path = str(tmp_path / 'big.jsonl')
    write_jsonl(path, big)
    t0 = time.perf_counter()
    out = write_page(str(tmp_path / 'big.html'), build_pairs_view(path, bpe_tokenizer, 256))
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    dom = load(out, 'page=250')
    load_s = time.perf_counter() - t0
    print(f'5000 pairs: {os.path.getsize(out) / 1e6:.1f} MB, built in {build_s:.1f} s, '
          f'loaded and drawn by chromium in {load_s:.1f} s '
          f"(parse {dom.body['data-parse-ms']} ms, draw {dom.body['data-draw-ms']} ms)")
    # one page of 20 pairs in the DOM, the last one; the summary covers the whole file
    assert [a['data-index'] for a in dom.articles] == [str(i) for i in range(4980, 5000)]
    dom = load(out, 'q=%23499')  # '#499' matches pairs 499 and 4990..4999
    assert [a['data-index'] for a in dom.articles] == ['499'] + [str(i) for i in
                                                                 range(4990, 5000)]
    assert load_s < 60
