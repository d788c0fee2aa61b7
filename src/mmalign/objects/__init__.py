"""What objects are called, and how a text names them: shared by the pair builders, CHAIR and the tiny models.

- :mod:`.shapes`: the shapes world's words (colours, shapes, sizes, positions, sentence templates) and the
  corpus the tiny models' tokenizers are trained on;
- :mod:`.vocabulary`: object vocabularies (:class:`~mmalign.objects.vocabulary.ObjectVocabulary`): COCO's
  80 classes with their synonyms (:mod:`.coco_synonyms`), and the shapes world's colour + shape types;
- :mod:`.mentions`: the objects a text mentions, found as the original CHAIR script finds them, with
  :mod:`.tokens` (NLTK 3.2.5's ``word_tokenize``) and :mod:`.singular` (pattern 3.6's ``singularize``).
"""
