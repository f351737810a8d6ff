"""The pure decision core of Flowcraft.

Nothing in this package performs I/O, awaits, sleeps, reads the clock or draws random numbers:
time arrives on each event (``at``), identifiers are derived from the run id, node id, frame and
attempt, and retry jitter is a hash of those. Given a plan, a run's state and one event, the core
updates the state and returns the actions the runtime must carry out. The in-memory runtime and
every distributed adapter call the same core, which is what keeps the backends from drifting apart.
"""
