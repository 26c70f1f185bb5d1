"""One plain training loop per stage, each in its own module (``prior``, ``motion``, ``relation``,
``source``, ``adapt``) with its config dataclass; ``evaluate`` scores an image encoder on labelled clips.

Nothing is re-exported here: ``nlrd.train.adapt`` and ``nlrd.train.evaluate`` must stay the modules.
"""
