"""One module per graded chapter: ``chNN_slug.py`` defines ``QUESTIONS`` for chapter ``NN_slug``."""
