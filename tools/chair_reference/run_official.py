# -*- coding: utf-8 -*-
"""Run the original CHAIR script on real captions and write what it finds, as test fixtures for mmalign.

Python 2.7 only (the original is Python 2). Set-up, in an empty folder (see README.md beside this file):
``utils/chair.py`` from LisaAnne/Hallucination @ a967f2f unmodified, ``utils/misc.py`` holding ``import os``
(the original's misc.py pulls in modules CHAIR never uses), ``data/synonyms.txt`` (= shared/data/chair/
coco_synonyms.txt), ``pattern/en.py`` giving pattern 3.6's ``singularize``, nltk 3.2.5 on PYTHONPATH and
NLTK_DATA holding ``tokenizers/punkt/english.pickle`` made by ``make_punkt_pickle.py``.

    python2 run_official.py SHARED_DATA_CHAIR OUT_DIR
"""
import io, json, os, random, sys

sys.path.insert(0, 'utils')
import nltk  # noqa: E402
from chair import CHAIR  # noqa: E402
from pattern.en import singularize  # noqa: E402

shared, out = sys.argv[1], sys.argv[2]
BLANK = dict((k, 0.0) for k in ('Bleu_1', 'Bleu_2', 'Bleu_3', 'Bleu_4', 'METEOR', 'CIDEr', 'SPICE', 'ROUGE_L'))


def jsonl(path):
    return [json.loads(line) for line in io.open(path, encoding='utf-8') if line.strip()]


def write_jsonl(path, rows):
    with io.open(path, 'w', encoding='utf-8') as f:
        for row in rows:
            f.write(unicode(json.dumps(row, ensure_ascii=False, sort_keys=True)) + u'\n')  # noqa: F821 (Python 2)


def texts():
    for name, rows in (('real-captions', jsonl(shared + '/real-captions/captions.jsonl')),
                       ('llava-coco80', jsonl(shared + '/llava-coco80/captions.jsonl'))):
        for i, row in enumerate(rows):
            yield name, i, row['caption']
    refs = json.load(open(shared + '/llava-coco80/annotations/captions_val2014.json'))['annotations']
    for i, ann in enumerate(refs):
        yield 'llava-coco80-references', i, ann['caption']


def generated(n, seed):
    """Strings dense in what tokenizers disagree on: quotes, dashes, periods, contractions, odd spaces."""
    rng = random.Random(seed)
    words = (u"a the dog dogs cat's people bus buses glasses st. mr. u.s. e.g. no. 5 3.5 1,000 o'clock can't "
             u"i'm you're train tracks hot-dog t-shirt na\xefve wanna gonna cannot 'tis mor'n gimme dogs' sheep "
             u"people's \xb4 ca n't").split()
    marks = list(u".,;:!?'\"\u201c\u201d\u2018\u2019\xab\xbb()[]{}<>-\u2014\u2013\u2026&%$#@*/`") + [
        u"..", u"...", u"--", u"''", u"``", u". ", u"\n", u"  ", u"\t", u"\xa0", u"\u2009", u"\u3000", u"\u0663",
        u"x\xa0.", u".\xa0", u"\u2028", u"\r\n", u". The ", u"! A ", u"? "]
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 16)):
            r = rng.random()
            parts.append(rng.choice(words) if r < 0.55 else rng.choice(marks) if r < 0.85
                         else rng.choice(words) + rng.choice(marks))
            parts.append(rng.choice([u" ", u" ", u" ", u"", u"  "]))
        yield u"".join(parts)


evaluator = CHAIR(set([0]), 'unused')
rows, vocabulary = [], set()
for name, i, caption in texts():
    tokens = nltk.word_tokenize(caption.lower())
    words, objects, positions, _ = evaluator.caption_to_words(caption)
    vocabulary.update(tokens)
    rows.append({'set': name, 'index': i, 'tokens': tokens, 'words': words, 'objects': objects,
                 'positions': positions})
write_jsonl(out + '/captions.jsonl', rows)
write_jsonl(out + '/generated.jsonl', [{'text': t, 'tokens': nltk.word_tokenize(t.lower())}
                                       for t in generated(2000, 0)])

extra = json.load(open(sys.argv[3])) if len(sys.argv) > 3 else []
words = sorted(vocabulary | set(extra))
table = {'source': 'pattern 3.6 singularize (clips/pattern pattern/text/en/inflect.py) under Python 2.7',
         'words': dict((w, singularize(w)) for w in words)}
with io.open(out + '/singular.json', 'w', encoding='utf-8') as f:
    f.write(unicode(json.dumps(table, ensure_ascii=False, indent=0, sort_keys=True)))  # noqa: F821 (Python 2)

# Corpus figures: the LLaVA COCO-80 texts against ground truth from those 80 images' annotations (the train
# files the original also reads are empty: every image is a val2014 image).
os.path.isdir('ann') or os.mkdir('ann')
for kind in ('instances', 'captions'):
    val = json.load(open(shared + '/llava-coco80/annotations/%s_val2014.json' % kind))
    json.dump(val, open('ann/%s_val2014.json' % kind, 'w'))
    json.dump({'info': {}, 'licenses': [], 'images': [], 'annotations': [], 'categories': val.get('categories', [])},
              open('ann/%s_train2014.json' % kind, 'w'))
llava = jsonl(shared + '/llava-coco80/captions.jsonl')
caps = {'overall': BLANK, 'imgToEval': {}}
for i, row in enumerate(llava):
    entry = dict(BLANK, image_id=row['image_id'], caption=row['caption'])
    caps['imgToEval']['%04d' % i] = entry
json.dump(caps, open('ann/caps.json', 'w'))
evaluator = CHAIR(set(row['image_id'] for row in llava), 'ann')
evaluator.get_annotations()
result = evaluator.compute_chair('ann/caps.json')
by_caption = dict((s['caption'], s) for s in result['sentences'])
json.dump({'CHAIRs': result['overall_metrics']['CHAIRs'], 'CHAIRi': result['overall_metrics']['CHAIRi'],
           'ground_truth': dict((str(k), sorted(v)) for k, v in evaluator.imid_to_objects.items()),
           'hallucinated': [[list(p) for p in by_caption[row['caption']]['mscoco_hallucinated_words']]
                            for row in llava]},
          open(out + '/corpus.json', 'w'), indent=0, sort_keys=True)
print('\nCHAIRs %.6f CHAIRi %.6f' % (result['overall_metrics']['CHAIRs'], result['overall_metrics']['CHAIRi']))
