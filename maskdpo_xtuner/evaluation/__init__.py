"""Evaluation: ANAH-style metrics and paired intervals (metrics.py), FActScore with an open
judge (factscore.py, factparse.py, retrieval.py), and models compared on the same questions
(compare.py)."""
