"""Errors raised while building, checking or calling a stochastic computation graph."""


class GraphError(ValueError):
    """A graph is malformed or breaks a condition of the theory (Schulman 2016, Ch. 5).

    Messages always name the node(s) at fault and say what to do.
    """


class CompileTimeWarning(UserWarning):
    """A graph whose first call will spend a long time in XLA compilation (``scg.compile`` warns).

    The message gives the size that triggered it and how to declare the graph so that it compiles fast.
    """
