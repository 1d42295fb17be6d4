"""ANAH-v2's per-sentence protocol (Gu et al., 2024) run on any chat backend, batched by step.

Each sentence is one growing dialogue of up to three user turns:

1. ``fact_check``: does the sentence state a checkable fact?  "No Facts" -> ``nofact``, stop.
2. ``reference``: extract the relevant points of the question's reference document (joined by
   ``<SEP>``). "No Reference Information" -> ``unverifiable``, stop. Otherwise the points are kept
   as the sentence's ``reference``.
3. ``judge``: compare the sentence with those points -> ``ok`` / ``contradictory`` /
   ``unverifiable``.

**Parsing free-form answers** (``parsing``), the label of each step's answer:

* ``'official'`` (the default): the rules of the official ANAH-v2 evaluation
  (``eval/anah_v2/eval.py`` of open-compass/ANAH), as its behaviour is documented there:
  step 1 stops with ``nofact`` only when the answer *is* a no-fact keyword, exactly as written
  (anything else goes on as "facts present"); step 2 stops with ``unverifiable`` when the
  answer, spaces removed and lower-cased, *contains* the no-reference keyword (brackets
  dropped), else the whole answer is the reference; step 3 looks, in the same folded answer,
  for the ok keyword, then contradictory, then unverifiable, and the first found wins ("not
  contradictory" is contradictory); none found is ``unparsed`` (the official code returns no
  label, which its score counts as correct).
* ``'tolerant'`` (this project's former rule, :func:`match_answer`): a keyword counts when it
  is the whole answer, its first line, its leading clause or a bracketed span; an answer
  naming no category or two is ``unparsed`` at any step, step 1 included.

The label the *other* rule gives from the same raw answers is kept in the trace
(``trace['other_parsing']``: None where the other rule would have needed a step the dialogue
did not take), so both numbers can be printed (tools/audit_judge.py agree).

**Constrained verdicts** (``constrain=True``): steps 1 and 3 are asked through the backend's
``choose`` (generation/base.py: vLLM's ``structured_outputs.choice``, LMDeploy's regex
``response_format``, or, with transformers, the choice of highest log-probability), so the
answer is exactly one keyword and always parses; step 2 stays free text. A small judge
(SmolLM2-135M) answers none of the free-form prompts in form; constrained, every verdict
parses (docs/real_model.md).

The raw answers of every step are kept in ``SentenceLabel.trace``.

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
PARSINGS = ('official', 'tolerant')
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
                 params: Optional[SamplingParams] = None, batch_size: Optional[int] = None,
                 parsing: str = 'official', constrain: bool = False):
        if parsing not in PARSINGS:
            raise ValueError(f'parsing must be one of {PARSINGS}, got {parsing!r}')
        if constrain and not callable(getattr(backend, 'choose', None)):
            raise ValueError(f'constrain=True needs a backend with choose() (openai, '
                             f'transformers, lmdeploy); {type(backend).__name__} has none')
        self.backend, self.parsing, self.constrain = backend, parsing, constrain
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

    def _generate(self, conversations: List[List[dict]], step: str = 'reference',
                  tsets: Optional[List[dict]] = None) -> List[str]:
        size = self.batch_size or len(conversations)
        out = []
        for k in range(0, len(conversations), size):
            chunk = conversations[k:k + size]
            if self.constrain and step != 'reference':
                out += self._choose(chunk, step, tsets[k:k + size])
                continue
            res = self.backend.generate(chunk, self.params, n=1)
            if len(res) != len(chunk):
                raise RuntimeError(f'backend returned {len(res)} results for {len(chunk)} '
                                   'conversations')
            out += [r[0] for r in res]
        return out

    def _choose(self, chunk, step, tsets) -> List[str]:
        """Constrained answers: each template set's first keyword per category."""
        out = [None] * len(chunk)
        groups = {}
        for i, t in enumerate(tsets):
            groups.setdefault(id(t), (t, []))[1].append(i)
        for t, idx in groups.values():
            choices = [t['steps'][step]['answers'][c][0] for c in STEP_CATEGORIES[step]]
            for i, a in zip(idx, self.backend.choose([chunk[i] for i in idx], choices,
                                                      self.params.max_new_tokens)):
                out[i] = a
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
            answers = self._generate([list(dialogs[i]) for i in pending], step,
                                     [self.template_set(tasks[i]) for i in pending])
            still = []
            for i, ans in zip(pending, answers):
                dialogs[i].append({'role': 'assistant', 'content': ans})
                traces[i][step] = ans
                label = self._outcome(step, ans, self.parsing)
                if label is None:  # go on to the next step
                    if step == 'reference':
                        refs[i] = ans.strip()
                    still.append(i)
                    continue
                if label == 'unparsed':
                    traces[i]['unparsed_at'] = step
                results[i] = SentenceLabel(label, refs[i], traces[i])
            pending = still
        other = PARSINGS[1 - PARSINGS.index(self.parsing)]
        for r in results:
            r.trace['parsing'] = self.parsing
            r.trace['other_parsing'] = {'parsing': other,
                                        'label': self.replay(r.trace, other)}
        return results

    def replay(self, trace: dict, parsing: str) -> Optional[str]:
        """The label ``parsing`` gives to the raw answers of ``trace``; None if it would go
        on to a step the dialogue did not take."""
        for step in STEPS:
            if step not in trace:
                return None
            label = self._outcome(step, trace[step], parsing)
            if label is not None:
                return label
        return None

    def _outcome(self, step: str, answer: str, parsing: str = 'official') -> Optional[str]:
        """The final label of a sentence after this step's answer, or None to go on."""
        if parsing == 'official':
            return self._official(step, answer)
        cat = match_answer(answer, self.answers[step])
        if step == 'fact_check':
            return None if cat == 'facts' else 'nofact' if cat == 'nofact' else 'unparsed'
        if step == 'reference':  # anything but the no-reference keyword is the points
            return 'unverifiable' if cat == 'none' else None if answer.strip() else 'unparsed'
        return cat or 'unparsed'

    def _official(self, step: str, answer: str) -> Optional[str]:
        """ANAH-v2's official rules (module doc): exact at step 1, containment after."""
        kws = self.answers[step]
        if step == 'fact_check':
            return 'nofact' if answer in kws['nofact'] else None
        folded = _fold(answer)
        if step == 'reference':
            return 'unverifiable' if any(_fold(k) in folded for k in kws['none']) else None
        for cat in STEP_CATEGORIES['judge']:
            if any(_fold(k) in folded for k in kws[cat]):
                return cat
        return 'unparsed'


def _fold(text: str) -> str:
    """Spaces removed, lower case, angle brackets of a keyword dropped: the official
    containment test's form ("<No Hallucination>" -> "nohallucination")."""
    return text.replace(' ', '').lower().strip().strip('<>').replace('<', '').replace('>', '')
