"""Training: strategy phases (images or cached features) run by one engine on Lightning Fabric.

Import from the modules: ``engine.train_phases``, ``strategies.plan_phases``, ``callbacks.Callback``
(this package imports nothing, so ``headstart.training.callbacks`` stays free of torch).
"""
