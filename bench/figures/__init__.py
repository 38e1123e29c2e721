"""The figures, drawn from the tidy tables on disk: the paper's set (``make figures``) and each
sweep's own, by the same functions.

One module per figure group (memory, compute, lopt_cost, ablation, pareto, curves,
architecture), each a function from tables to a matplotlib figure and the values it plots;
``style`` keeps them consistent, ``sources`` finds their tables, ``paper`` draws them all with
an index page, ``sweep`` draws one sweep's figures after it runs.
"""
