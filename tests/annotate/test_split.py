"""Sentence splitter: hand-written tricky cases and property tests over random texts."""
import re
import unicodedata

import pytest
from hypothesis import assume, given, settings, strategies as st

from maskdpo_xtuner.annotate.split import Sentence, detect_lang, split_sentences


def texts(text, lang='auto'):
    return [s.text for s in split_sentences(text, lang)]


# ----------------------------------------------------------------------------- hand-written

@pytest.mark.parametrize('text,expected', [
    # abbreviations, initials, acronyms, decimals
    ('Mr. Smith met Dr. Jones at 3 p.m. today. They talked.',
     ['Mr. Smith met Dr. Jones at 3 p.m. today.', 'They talked.']),
    ('J. K. Rowling wrote it. Pi is 3.14 here. Yes!',
     ['J. K. Rowling wrote it.', 'Pi is 3.14 here.', 'Yes!']),
    ('He moved to the U.S. in Jan. 1990 with a Ph.D. from Oxford. It rained.',
     ['He moved to the U.S. in Jan. 1990 with a Ph.D. from Oxford.', 'It rained.']),
    ('Apples, pears, e.g. fruit, i.e. food, vs. meat etc. are sold. Then we left.',
     ['Apples, pears, e.g. fruit, i.e. food, vs. meat etc. are sold.', 'Then we left.']),
    ('We sold apples, pears, etc. The rest rotted.',
     ['We sold apples, pears, etc.', 'The rest rotted.']),
    ('No. I refuse. See No. 5 and Fig. 2 for approx. 3 cases.',
     ['No.', 'I refuse.', 'See No. 5 and Fig. 2 for approx. 3 cases.']),
    ('Acme Inc. and Foo Ltd. merged. Prices rose 2.5% in 2020. Sales fell.',
     ['Acme Inc. and Foo Ltd. merged.', 'Prices rose 2.5% in 2020.', 'Sales fell.']),
    # quotes and brackets
    ('He said "Stop!" Then left.', ['He said "Stop!"', 'Then left.']),
    ('"Stop!" he said. Fine.', ['"Stop!" he said.', 'Fine.']),
    ('It is big (really big.) Next one? Yes.', ['It is big (really big.)', 'Next one?', 'Yes.']),
    ('What?! Really?? No!!! Ok.', ['What?!', 'Really??', 'No!!!', 'Ok.']),
    # semicolons, newlines, trailing text
    ('First part; second part; third', ['First part;', 'second part;', 'third']),
    ('x;y is one token', ['x;y is one token']),
    ('Line one\nline two.\r\nline three\n\n\n  \nlast line',
     ['Line one', 'line two.', 'line three', 'last line']),
    ('trailing text without punctuation', ['trailing text without punctuation']),
    ('www.example.com. Visit it.', ['www.example.com.', 'Visit it.']),
    # ellipses
    ('Wait... what? Then... The end', ['Wait...', 'what?', 'Then...', 'The end']),
    ('Well… Maybe.', ['Well…', 'Maybe.']),
    # Chinese
    ('北京是中国的首都。上海很大！你去过吗？我们走吧；好的。',
     ['北京是中国的首都。', '上海很大！', '你去过吗？', '我们走吧；', '好的。']),
    ('他说：“你好。”然后走了。她问：“真的吗？”，我点头。',
     ['他说：“你好。”', '然后走了。', '她问：“真的吗？”，我点头。']),
    ('嗯……然后呢？他走了。', ['嗯……然后呢？', '他走了。']),
    ('价格是3.5元。很便宜', ['价格是3.5元。', '很便宜']),
    ('你好吗?我很好!谢谢', ['你好吗?', '我很好!', '谢谢']),
    # mixed
    ('Einstein（爱因斯坦）was born in Ulm. He moved to 柏林 later.',
     ['Einstein（爱因斯坦）was born in Ulm.', 'He moved to 柏林 later.']),
    ('牛顿是英国物理学家。He was born in 1643. 他发现了万有引力。',
     ['牛顿是英国物理学家。', 'He was born in 1643.', '他发现了万有引力。']),
    ('他在Apple Inc. 工作。It is fine.', ['他在Apple Inc. 工作。', 'It is fine.']),
    # empty and punctuation-only
    ('', []),
    ('   \n\t\n  ', []),
    ('-\n1.\n---\n|---|---|\n...', []),
])
def test_cases(text, expected):
    assert texts(text) == expected


def test_lists_exclude_markers_from_spans():
    text = ('Intro.\n1. First item.\n2) Second item\n  (3) Third\n- bullet one\n* star\n'
            '• dot\n+ plus\n> quoted\n1.Glued item\n（1）第一点。\n2、第二点\n一、总结\n'
            '10. Tenth. Still tenth item\n- 3. nested')
    got = split_sentences(text)
    assert [s.text for s in got] == [
        'Intro.', 'First item.', 'Second item', 'Third', 'bullet one', 'star', 'dot', 'plus',
        'quoted', 'Glued item', '第一点。', '第二点', '总结', 'Tenth.', 'Still tenth item',
        'nested']
    first = got[1]
    assert (first.start, first.end) == (text.index('First'), text.index('First') + 11)


def test_colon_lines_merge_with_the_next_line_as_anah_v2():
    # ANAH-v2 joins ':' + whitespace, so a colon line is not a (nofact) sentence of its own:
    # with item 1 wrong this answer scores 1/2 as in ANAH-v2, not 2/3
    text = 'Key facts:\n1. Born in 1900.\n2. Died in 1980.'
    got = split_sentences(text)
    assert [s.text for s in got] == ['Key facts:\n1. Born in 1900.', 'Died in 1980.']
    assert (got[0].start, got[0].end) == (0, text.index('1900.') + 5)
    assert texts('Facts:\n\n- a\nb.') == ['Facts:\n\n- a', 'b.']     # blank lines skipped
    assert texts('事实：\n1. 生于1900年。\n2. 卒于1980年。') == ['事实：\n1. 生于1900年。', '卒于1980年。']
    assert texts('Note: mid-line colon. Next.') == ['Note: mid-line colon.', 'Next.']
    assert texts('It ends:') == ['It ends:']


def test_headers_merge_only_when_asked():
    text = '## Early life\nHe was born in 1900.\nCareer\n\nHe won.\n**Awards**\n- Prize.\n- Medal'
    assert texts(text) == ['Early life', 'He was born in 1900.', 'Career', 'He won.', 'Awards',
                           'Prize.', 'Medal']
    got = split_sentences(text, merge_headers=True)
    assert [s.text for s in got] == ['Early life\nHe was born in 1900.', 'Career\n\nHe won.',
                                     'Awards**\n- Prize.', 'Medal']  # a list item is no header
    assert got[0].start == 3


@pytest.mark.parametrize('text,expected', [
    # ANAH-v2 does not split these either
    ('See Smith et al. for details.', ['See Smith et al. for details.']),
    ('I. Introduction.', ['I. Introduction.']),
    ('Smith et al. The end.', ['Smith et al.', 'The end.']),
    # neither should split; both did
    ('He was born c. 1500 in Rome.', ['He was born c. 1500 in Rome.']),
    ('Ann Lee (b. 1950) sings.', ['Ann Lee (b. 1950) sings.']),
    ('She went to the Univ. for a year.', ['She went to the Univ. for a year.']),
    ('It cost approx. $5 then.', ['It cost approx. $5 then.']),
    ('He died ca. 1620 and d. 1621.', ['He died ca. 1620 and d. 1621.']),
    ('Play plan b. Then go.', ['Play plan b.', 'Then go.']),
    # a capital glued to a digit is no initial: these end sentences (they did not)
    ('Water is H2O. It boils at 100 C.', ['Water is H2O.', 'It boils at 100 C.']),
    ('The film is in 3D. Tickets cost more.', ['The film is in 3D.', 'Tickets cost more.']),
    ('It streams in 4K. Few TVs show it.', ['It streams in 4K.', 'Few TVs show it.']),
    ('He met J. K. Rowling.', ['He met J. K. Rowling.']),  # initials still hold
    ('Mt. Everest rises. Vol. 3 came out.', ['Mt. Everest rises.', 'Vol. 3 came out.']),
    ('他来了!我们走吧。', ['他来了!', '我们走吧。']),  # ASCII '!' before a CJK character
])
def test_abbreviations_as_anah_v2_or_better(text, expected):
    assert texts(text) == expected


def test_markdown_headers_and_bold_titles():
    text = ('## Header one\n**Bold Title**\n### **Both**\n**Note:** text here. More.\n'
            '**1. Paris**: the capital.\n**a** and **b**\n- **Item**')
    assert texts(text) == ['Header one', 'Bold Title', 'Both', '**Note:** text here.', 'More.',
                           '**1. Paris**: the capital.', '**a** and **b**', 'Item']


def test_numbers_that_are_not_markers():
    assert texts('3.14 is pi.\n2021. A year.\n1.5 million people came.') == [
        '3.14 is pi.', '2021.', 'A year.', '1.5 million people came.']


def test_lang_only_changes_ellipses():
    # ANAH-v2: English splits at "..." + whitespace; Chinese only at 。！？； and line breaks
    text = 'He paused... then spoke.'
    assert texts(text, 'en') == ['He paused...', 'then spoke.']
    assert texts(text, 'zh') == ['He paused... then spoke.']
    assert texts('他停了……然后说话。', 'zh') == ['他停了……然后说话。']
    plain = 'Mr. Li went home. He slept; 他睡了。'
    assert texts(plain, 'en') == texts(plain, 'zh') == ['Mr. Li went home.', 'He slept;', '他睡了。']


def test_detect_lang():
    assert detect_lang('The cat sat on the mat.') == 'en'
    assert detect_lang('北京是中国的首都。') == 'zh'
    assert detect_lang('牛顿（Isaac Newton）是英国物理学家。') == 'zh'
    assert detect_lang('Newton lived in 英国 for most of his life.') == 'en'
    assert detect_lang('') == 'en'


def test_sentence_type_and_bad_lang():
    s = split_sentences('  Hi there.  ')[0]
    assert isinstance(s, Sentence) and s == Sentence(2, 11, 'Hi there.')
    assert s._fields == ('start', 'end', 'text')
    with pytest.raises(ValueError):
        split_sentences('x', 'fr')


# ------------------------------------------------------------------------ random texts

LINE_BREAKS = '\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029'
FRAGMENTS = [
    'Hello', 'world', 'the', 'Dr', 'Mr', 'U', 'S', 'J', 'e', 'g', 'etc', 'No', '3', '14', '2021',
    'é', 'naïve', '北京', '你好', '是', 'カナ', '한국',
    '.', '.', '!', '?', ';', '。', '！', '？', '；', '…', '……', '...', ',', '，', '、', ':',
    '"', '“', '”', "'", '’', '(', ')', '（', '）', '「', '」', '**', '*', '__', '#', '##', '-',
    '•', '>', '+', '|', '=', '~', '_',
    ' ', ' ', '  ', '\t', '\u3000', '\xa0', '\n', '\n', '\r\n', '\n\n', '\u2028', '\x0b',
    '1. ', '2) ', '(3) ', '（4）', '5、', '一、', 'a) ', '- ', '* ', '• ', '## ', '> ', '1.',
]
random_text = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.characters()),
                       max_size=40).map(''.join)
# The test's own notion of "list marker or punctuation only": what may be left uncovered.
LEFTOVER = re.compile(r'(?:\d{1,3}[.)．、]|[(（]\d{1,3}[)）]|[a-zA-Z]\)|[一二三四五六七八九十]{1,3}、'
                      r'|[^\w\s]|_)+')


def check_spans(text, sents):
    prev_end = 0
    for s in sents:
        assert isinstance(s, Sentence)
        assert text[s.start:s.end] == s.text
        assert s.text and s.text == s.text.strip()
        assert prev_end <= s.start < s.end
        # every line break ends a sentence, except after a colon (ANAH-v2's colon merge)
        for k, c in enumerate(s.text):
            if c in LINE_BREAKS:
                assert s.text[:k].rstrip().rstrip('*_')[-1:] in (':', '：'), s.text
        # never only punctuation/markers: some letter, digit or (non-marker) symbol
        assert any(unicodedata.category(c)[0] in 'LNS' and c not in '+=|>~^`' for c in s.text)
        prev_end = s.end


@settings(max_examples=200, deadline=None)
@given(random_text, st.sampled_from(['auto', 'en', 'zh']))
def test_random_spans_are_exact_stripped_ordered(text, lang):
    sents = split_sentences(text, lang)
    check_spans(text, sents)
    assert split_sentences(text, lang) == sents  # deterministic
    if lang == 'auto':
        assert sents == split_sentences(text, detect_lang(text))


@settings(max_examples=200, deadline=None)
@given(random_text, st.sampled_from(['en', 'zh']))
def test_random_only_markers_and_punctuation_are_left_out(text, lang):
    """Blank out every span: what remains is whitespace, punctuation and list markers, so no
    letter (and no digit outside a list number) is ever dropped from the sentences."""
    rest = list(text)
    for s in split_sentences(text, lang):
        rest[s.start:s.end] = ' ' * (s.end - s.start)
    for token in ''.join(rest).split():
        assert LEFTOVER.fullmatch(token), (token, text)


@settings(max_examples=200, deadline=None)
@given(random_text, st.sampled_from(['en', 'zh']))
def test_random_lines_split_independently(text, lang):
    """Splitting a text = splitting each of its lines and shifting the offsets (without
    colons: a line ending in one continues into the next)."""
    assume(':' not in text and '：' not in text)
    expected, pos = [], 0
    for line in text.splitlines(keepends=True):
        expected += [s._replace(start=s.start + pos, end=s.end + pos)
                     for s in split_sentences(line, lang)]
        pos += len(line)
    assert split_sentences(text, lang) == expected


# -------------------------------------------------- random documents with known sentences

EN_WORDS = ['apple', 'river', 'stone', 'Paris', 'music', 'seven', 'light', 'green,', '3.14',
            'Dr. Maria', 'the U.S. army', 'e.g. rice', 'J. K. Rowling', 'Mr. Li', '北京',
            '"quoted words"', '(aside)', '"Why?" she asked', 'etc. and']
ZH_WORDS = ['北京', '天气', '很好', '我们', '去了', '公园', '2024年', 'Apple公司', '，', '3.5亿',
            '“真的吗？”，', '（见下文）']


@st.composite
def en_sentence(draw, last, lang):
    words = draw(st.lists(st.sampled_from(EN_WORDS + (['paused... then'] if lang == 'zh'
                                                      else [])), max_size=4))
    body = ' '.join([draw(st.sampled_from(['The', 'Apple', 'River', 'It', 'Stone']))] + words)
    if last and draw(st.booleans()):
        return body  # trailing text without punctuation
    # in Chinese no ellipsis ends a sentence, so one only ends a line there
    end = draw(st.sampled_from(['.', '!', '?', ';', '?!'] + (['...', '…']
                                                           if lang == 'en' or last else [])))
    if draw(st.integers(0, 4)) == 0:
        return f'{body} "Stop{end}"'
    return body + end


@st.composite
def zh_sentence(draw, last, lang):
    body = '北京' + ''.join(draw(st.lists(st.sampled_from(ZH_WORDS), max_size=4)))
    if last and draw(st.booleans()):
        return body
    end = draw(st.sampled_from(['。', '！', '？', '；', '?', '!'] + (['……'] if lang == 'en' or
                                                                  last else [])))
    if draw(st.integers(0, 4)) == 0:
        return f'{body}：“你好{end}”'
    return body + end


@st.composite
def document(draw):
    """A text built from known sentences, lines, markers and separators, with the sentences
    it must split into. ``lang`` is explicit; mixed lines must split right in both modes."""
    lang = draw(st.sampled_from(['en', 'zh']))
    lines, expected = [], []
    for _ in range(draw(st.integers(1, 4))):
        indent = draw(st.sampled_from(['', '', '  ', '\t']))
        kind = draw(st.integers(0, 7))
        if kind == 0:  # bold title, maybe a header too: the wrapping is not in the span
            title = draw(st.sampled_from(['Paris', 'Big News', '北京概况']))
            lines.append(indent + draw(st.sampled_from(['', '## '])) + f'**{title}**')
            expected.append(title)
            continue
        if kind == 1:  # a list number inside bold is not a sentence end
            lines.append(indent + '**2. Paris**: the capital.')
            expected.append('**2. Paris**: the capital.')
            continue
        marker = draw(st.sampled_from(['', '', '1. ', '2) ', '(3) ', '- ', '* ', '• ', '## ',
                                       '> ', '（4）', '5、', '一、']))
        n = draw(st.integers(1, 4))
        sents = [draw((en_sentence if draw(st.booleans()) else zh_sentence)(i == n - 1, lang))
                 for i in range(n)]
        line = marker
        for i, sent in enumerate(sents):
            if i:
                # no space needed after 。！？； or before a CJK character
                glued = re.search('[。！？；]”?$', sents[i - 1]) or sent[0] == '北'
                line += draw(st.sampled_from(['', ' '] if glued else [' ', '  ']))
            line += sent
        lines.append(indent + line + draw(st.sampled_from(['', ' '])))
        expected += sents
    seps = [draw(st.sampled_from(['\n', '\r\n', '\n\n', '\n \n'])) for _ in lines[1:]]
    text = lines[0] + ''.join(sep + line for sep, line in zip(seps, lines[1:]))
    return text, lang, expected


@settings(max_examples=200, deadline=None)
@given(document())
def test_random_documents_split_into_the_sentences_they_were_built_from(doc):
    text, lang, expected = doc
    sents = split_sentences(text, lang)
    check_spans(text, sents)
    assert [s.text for s in sents] == expected
