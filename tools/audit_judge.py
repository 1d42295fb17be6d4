"""The exact judges of the real study against sentences labelled by reading.

    python tools/audit_judge.py                      # both audit sets under tests/ (a few s)
    python tools/audit_judge.py --judge cities --set tests/studies/real/fixtures/audit_cities.jsonl
    python tools/audit_judge.py draw --answers greedy=a.jsonl sampled=b.jsonl --n 180 --out x.jsonl
    python tools/audit_judge.py agree --anah anah.jsonl --exact exact.jsonl

The first form prints each judge's precision and recall for "hallucinated" and "ok" and its
confusion table (maskdpo_xtuner/studies/real/audit.py); ``--disagreements`` lists the sentences
where judge and reader differ. ``draw`` takes a seeded random sample of sentences from sampler
outputs, to be labelled by reading (fields in the module doc of audit.py). ``agree`` compares
the ANAH-v2 labels of an annotated file (tools/annotate.py --save-trace) with the exact judge's
on the same answers: unparsed share, confusion table and Cohen's kappa, under the official
parsing and the tolerant one.
"""
import json
import os

from maskdpo_xtuner.cli import tool_parser
from maskdpo_xtuner.io.errors import tool_main
from maskdpo_xtuner.io.jsonl import write_jsonl
from maskdpo_xtuner.io.validate import records
from maskdpo_xtuner.studies.real.audit import (audit, draw, format_agreement, format_audit,
                                               judge_agreement)

FIXTURES = os.path.join('tests', 'studies', 'real', 'fixtures')
SETS = {'countries': os.path.join(FIXTURES, 'audit_countries.jsonl'),
        'cities': os.path.join(FIXTURES, 'audit_cities.jsonl')}


@tool_main
def main(argv=None):
    p = tool_parser(__doc__)
    p.add_argument('command', nargs='?', default='audit', choices=('audit', 'draw', 'agree'))
    p.add_argument('--judge', choices=sorted(SETS), help='one judge (default: both)')
    p.add_argument('--set', help='audit JSONL (default: the fixture of the judge)')
    p.add_argument('--disagreements', action='store_true')
    p.add_argument('--json', help='also write the numbers as JSON')
    p.add_argument('--answers', nargs='+', default=[], help='draw: DECODING=SAMPLER_OUTPUT')
    p.add_argument('--n', type=int, default=180)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out')
    p.add_argument('--anah', help='agree: annotated file of the ANAH-v2 judge')
    p.add_argument('--exact', help='agree: annotated file of the exact judge')
    args = p.parse_args(argv)
    if args.command == 'agree':
        if not args.anah or not args.exact:
            raise SystemExit('agree needs --anah FILE and --exact FILE')
        agr = judge_agreement(records(args.anah), records(args.exact))
        print(format_agreement(agr))
        return agr
    if args.command == 'draw':
        if not args.answers or not args.out:
            raise SystemExit('draw needs --answers DECODING=FILE ... and --out')
        files = dict(a.split('=', 1) for a in args.answers)
        write_jsonl(args.out, draw(files, args.n, args.seed))
        return None
    judges = [args.judge] if args.judge else sorted(SETS)
    if args.set and len(judges) != 1:
        raise SystemExit('--set needs --judge')
    out = {}
    for j in judges:
        path = args.set or SETS[j]
        out[j] = audit(records(path), j)
        print(format_audit(f'{j} ({path})', out[j]))
        if args.disagreements:
            for x in out[j]['disagreements']:
                print(f'- reader {x["truth"]}, judge {x["judge"]}: {x["sentence"]!r} '
                      f'({x.get("reason", "")})')
            print()
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({j: {k: v for k, v in a.items() if k != 'disagreements'}
                       for j, a in out.items()}, f, indent=2)
    return out


if __name__ == '__main__':
    main()
