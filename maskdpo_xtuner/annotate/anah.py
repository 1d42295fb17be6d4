"""ANAH-v2's per-sentence protocol (Gu et al., 2024) run on any chat backend, batched by step.

Each sentence is one growing dialogue of up to three user turns:

1. ``fact_check``: does the sentence state a checkable fact?  "No Facts" -> ``nofact``, stop.
2. ``reference``: extract the relevant points of the question's reference document (joined by
   ``<SEP>``). "No Reference Information" -> ``unverifiable``, stop. Otherwise the points are kept
   as the sentence's ``reference``.
3. ``judge``: compare the sentence with those points -> ``ok`` / ``contradictory`` /
   ``unverifiable``.

An answer that matches none of a step's expected outputs (or more than one) ends with the label
``unparsed``; the raw answers of every step are kept in ``SentenceLabel.trace``.

Batching: a step is one ``backend.generate`` call (one per ``batch_size`` chunk) over all the
sentences still pending at that step, instead of the official eval's one request at a time.

The prompts are data (``maskdpo_xtuner/prompts/*.json``, schema in ``maskdpo_xtuner/prompts/README.md``); the
bundled ones are this project's own wording, *not* the ANAH-v2 model's training prompts.
"""
import json
import os
import re
from typing import Dict, List, Optional, Union

from maskdpo_xtuner.generation.base import SamplingParams
from maskdpo_xtuner.annotate.base import SentenceLabel, SentenceTask

PROMPT_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          'prompts')  # package data: installed with the package
BUNDLED = {'en': 'anah_v2_style_en.json', 'zh': 'anah_v2_style_zh.json'}

STEPS = ('fact_check', 'reference', 'judge')
# The answer categories each step's "answers" must define.
STEP_CATEGORIES = {'fact_check': ('facts', 'nofact'), 'reference': ('none',),
                   'judge': ('ok', 'contradictory', 'unverifiable')}
PLACEHOLDERS = re.compile(r'\{(question|sentence|response|document|reference)\}')

# ---------------------------------------------------------------------------------- templates


def _validate(tset: dict, where: str) -> dict:
    steps = tset.get('steps')
    if not isinstance(steps, dict):
        raise ValueError(f'{where}: a template set needs a "steps" object')
    for step, cats in STEP_CATEGORIES.items():
        spec = steps.get(step)
        if not isinstance(spec, dict) or not isinstance(spec.get('template'), str):
            raise ValueError(f'{where}: steps.{step}.template (a string) is missing')
        answers = spec.get('answers', {})
        for cat in cats:
            kws = answers.get(cat)
            kws = [kws] if isinstance(kws, str) else kws
            if not kws or not all(isinstance(k, str) and _norm(k) for k in kws):
                raise ValueError(f'{where}: steps.{step}.answers.{cat} needs a non-empty list '
                                 'of keywords')
            answers[cat] = kws
    return tset


def load_templates(spec: Union[str, dict] = 'auto') -> Dict[str, dict]:
    """Template sets keyed by language, or by ``'*'`` for one set used for every language.

    ``'auto'``: the bundled English and Chinese sets, picked per sentence by ``task.lang``;
    ``'en'`` / ``'zh'``: that bundled set for every sentence; a path to a JSON file or a dict:
    either one template set (has ``"steps"``) or ``{"en": set, "zh": set}``.
    """
    if isinstance(spec, str) and spec in ('auto', 'en', 'zh'):
        sets = {lang: load_templates(os.path.join(PROMPT_DIR, f))['*']
                for lang, f in BUNDLED.items()}
        return sets if spec == 'auto' else {'*': sets[spec]}
    where = '<dict>'
    if isinstance(spec, str):
        where = spec
        if not os.path.isfile(spec):
            raise FileNotFoundError(f'templates: {spec!r} is neither en/zh/auto nor a file')
        with open(spec, encoding='utf-8') as f:
            spec = json.load(f)
    if not isinstance(spec, dict):
        raise ValueError(f'{where}: templates must be a JSON object')
    if 'steps' in spec:
        return {'*': _validate(spec, where)}
    return {lang: _validate(s, f'{where}[{lang}]') for lang, s in spec.items()}


def fill(template: str, **values: str) -> str:
    """Substitute the known placeholders only; any other brace is literal text."""
    return PLACEHOLDERS.sub(lambda m: values.get(m.group(1), ''), template)

# ------------------------------------------------------------------------------------ parsing


_STRIP = str.maketrans('', '', '<>[]()【】（）《》「」『』〈〉"\'“”‘’*`')
_EDGE = ' .。!！:：,，;；-'


def _norm(s: str) -> str:
    """Lower case, no brackets/quotes, single spaces, no edge punctuation."""
    return ' '.join(s.translate(_STRIP).lower().split()).strip(_EDGE)


_BRACKETED = re.compile(r'[<\[【(（《「]([^<>\[\]【】()（）《》「」\n]{1,80})[>\]】)）》」]')


def match_answer(answer: str, answers: Dict[str, List[str]]) -> Optional[str]:
    """The one category whose keyword the answer states, else None.

    A keyword counts when it is the whole answer, its first line, its leading clause (up to the
    first punctuation mark) or a bracketed span, compared after ``_norm``. So ``<Contradictory>``,
    ``contradictory.`` and ``[Contradictory] the date is wrong`` match, but ``not contradictory``
    does not, and an answer stating two categories matches none.
    """
    text = answer.strip()
    lead = re.split(r'[.。!！:：,，;；\n]', text)[0]
    cands = {_norm(text), _norm(text.split('\n')[0]), _norm(lead)}
    cands.update(_norm(m) for m in _BRACKETED.findall(text))
    cands.discard('')
    found = {cat for cat, kws in answers.items() if any(_norm(k) in cands for k in kws)}
    return found.pop() if len(found) == 1 else None

# ---------------------------------------------------------------------------------- annotator


class AnahV2Annotator:
    """``annotate(tasks) -> labels`` with the ANAH-v2 three-step dialogue, batched by step."""

    needs_document = True

    def __init__(self, backend, templates: Union[str, dict] = 'auto',
                 params: Optional[SamplingParams] = None, batch_size: Optional[int] = None):
        self.backend = backend
        self.templates = load_templates(templates)
        self.params = params or SamplingParams.greedy(max_new_tokens=512)
        self.batch_size = batch_size
        # Keywords of every loaded set are accepted (e.g. a Chinese answer to an English prompt).
        self.answers = {step: {cat: [k for t in self.templates.values()
                                     for k in t['steps'][step]['answers'][cat]]
                               for cat in cats} for step, cats in STEP_CATEGORIES.items()}

    def template_set(self, task: SentenceTask) -> dict:
        tset = self.templates.get('*') or self.templates.get(task.lang)
        if tset is None:
            raise ValueError(f'no template set for lang {task.lang!r} '
                             f'(loaded: {sorted(self.templates)})')
        return tset

    def _generate(self, conversations: List[List[dict]]) -> List[str]:
        size = self.batch_size or len(conversations)
        out = []
        for k in range(0, len(conversations), size):
            chunk = conversations[k:k + size]
            res = self.backend.generate(chunk, self.params, n=1)
            if len(res) != len(chunk):
                raise RuntimeError(f'backend returned {len(res)} results for {len(chunk)} '
                                   'conversations')
            out += [r[0] for r in res]
        return out

    def annotate(self, tasks: List[SentenceTask]) -> List[SentenceLabel]:
        results: List[Optional[SentenceLabel]] = [None] * len(tasks)
        dialogs, traces, refs = [], [{} for _ in tasks], [''] * len(tasks)
        for t in tasks:
            system = self.template_set(t).get('system')
            dialogs.append([{'role': 'system', 'content': system}] if system else [])
        pending = list(range(len(tasks)))
        for step in STEPS:
            if not pending:
                break
            for i in pending:
                t = tasks[i]
                prompt = fill(self.template_set(t)['steps'][step]['template'],
                              question=t.question, sentence=t.sentence, response=t.response,
                              document=t.document, reference=refs[i])
                dialogs[i].append({'role': 'user', 'content': prompt})
            answers = self._generate([list(dialogs[i]) for i in pending])
            still = []
            for i, ans in zip(pending, answers):
                dialogs[i].append({'role': 'assistant', 'content': ans})
                traces[i][step] = ans
                label = self._outcome(step, ans)
                if label is None:  # go on to the next step
                    if step == 'reference':
                        refs[i] = ans.strip()
                    still.append(i)
                    continue
                if label == 'unparsed':
                    traces[i]['unparsed_at'] = step
                results[i] = SentenceLabel(label, refs[i], traces[i])
            pending = still
        return results

    def _outcome(self, step: str, answer: str) -> Optional[str]:
        """The final label of a sentence after this step's answer, or None to go on."""
        cat = match_answer(answer, self.answers[step])
        if step == 'fact_check':
            return None if cat == 'facts' else 'nofact' if cat == 'nofact' else 'unparsed'
        if step == 'reference':  # anything but the no-reference keyword is the points
            return 'unverifiable' if cat == 'none' else None if answer.strip() else 'unparsed'
        return cat or 'unparsed'
