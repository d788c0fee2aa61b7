# -*- coding: utf-8 -*-
import io, pickle, sys
from collections import defaultdict
from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer
d = sys.argv[1]
def lines(n):
    return [l.rstrip(u"\n") for l in io.open(d + "/" + n, encoding="utf-8")]
p = PunktParameters()
p.abbrev_types = set(lines("abbrev_types.txt"))
p.sent_starters = set(lines("sent_starters.txt"))
p.collocations = set(tuple(l.split(u"\t")) for l in lines("collocations.tab"))
p.ortho_context = defaultdict(int, dict((a, int(b)) for a, b in (l.split(u"\t") for l in lines("ortho_context.tab"))))
pickle.dump(PunktSentenceTokenizer(p), open(sys.argv[2], "wb"), protocol=2)
