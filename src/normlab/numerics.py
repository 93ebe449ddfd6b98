"""The engine's numerics version: part of every run's key (``normlab.plan``), recorded in every run folder.

Raise ``NUMERICS`` in the same commit as any change that alters the numbers of any run (a new
initialization, data order, an op computed another way, a probe that now consumes randomness...):
every run then gets a new key and retrains, and earlier runs are never reused for the new code.
Nothing else retrains: a change that leaves numbers bitwise equal keeps its runs.
``tests/test_numerics.py`` trains a tiny run and compares its metrics with values stored for this
version: it fails when numbers change while ``NUMERICS`` does not.

History: 2: image models on the CPU run member by member in channels-last memory (``normlab.ensemble``),
so their convolutions round otherwise; MLP and 1-D runs keep their numbers but retrain under the new key.
"""

NUMERICS = 2
