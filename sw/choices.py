"""Names the command-line options offer, kept free of heavy imports so that every
command module (``sw/cli.py``, ``sw/sweep.py``, ``sw/compare.py``,
``boards/commands.py``) can import them when it loads."""

#: The roundings of ``sw.fixed.Rounding``, by value (``tests/test_sw_cli.py`` checks it).
ROUNDINGS = ("truncate", "toward-zero", "half-up", "nearest-even", "stochastic")
