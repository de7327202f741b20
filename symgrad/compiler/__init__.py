"""The compiler: from graphs to plans of compiled steps.

In: the nodes a function computes (core). Out: a callable that runs them as one call into
compiled code.

    schedule.py     NetworkX order, memory plan -> Program
    codegen.py      Program -> the plan function's source (views and steps), its Decisions
    plan.py         the plan run on stand-ins for one call's shapes -> a table of steps
    jit.py          each step compiled by Numba once per machine (disk cache)
    lanes.py        the batch cut between cores where the graph proves it may be -> Lanes
    function.py     sg.function: the checked callable (interpreter while compiling)
"""
