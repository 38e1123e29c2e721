"""A sweep: ``python -m bench.sweep sweep=<preset>`` composes the preset's configs (``compose``),
plans its runs (``plan``), checks them (``checks``), decides what to run (``resume``), runs it
in this process or in workers (``execute``, ``worker``, ``pool``) and reports (``report``)."""
